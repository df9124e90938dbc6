// Run by the `bootstrap` container of mongodb-0 (k8s/base/mongodb.yaml) against its own
// mongod over localhost. Every step checks before it acts, so running it again is harmless;
// a thrown error makes the container retry after 5 s.
const env = process.env;
const members = parseInt(env.MONGO_MEMBERS, 10);
const host = (i) => `mongodb-${i}.mongodb:27017`;
const admin = db.getSiblingDB("admin");

// 1. Log in as the administrator; before any user exists that fails, and the localhost
//    exception lets this connection initiate the replica set and create the first user.
let loggedIn = false;
try {
  admin.auth(env.MONGO_ROOT_USERNAME, env.MONGO_ROOT_PASSWORD);
  loggedIn = true;
} catch (e) {
  print("no administrator yet: using the localhost exception");
}

// 2. The replica set.
try {
  rs.status();
} catch (e) {
  if (e.codeName !== "NotYetInitialized") { throw e; }
  rs.initiate({ _id: "rs0", members: [...Array(members).keys()].map((i) => ({ _id: i, host: host(i) })) });
  print(`replica set rs0 initiated with ${members} member(s)`);
}

// 3. Users are written on the primary: wait until this member is it, then the administrator.
for (let i = 0; !db.hello().isWritablePrimary; i++) {
  if (i >= 60) { throw new Error("mongodb-0 did not become primary within 60 s"); }
  sleep(1000);
}
if (!loggedIn) {
  admin.createUser({ user: env.MONGO_ROOT_USERNAME, pwd: env.MONGO_ROOT_PASSWORD, roles: ["root"] });
  admin.auth(env.MONGO_ROOT_USERNAME, env.MONGO_ROOT_PASSWORD);
  print("administrator created");
}

// 4. The application's user: readWrite on its database only; its password follows the Secret.
const roles = [{ role: "readWrite", db: env.MONGO_DB }];
if (admin.getUser(env.MONGO_APP_USERNAME)) {
  admin.updateUser(env.MONGO_APP_USERNAME, { pwd: env.MONGO_APP_PASSWORD, roles: roles });
} else {
  admin.createUser({ user: env.MONGO_APP_USERNAME, pwd: env.MONGO_APP_PASSWORD, roles: roles });
  print("application user created");
}

// 5. Members added when MONGO_MEMBERS grows (scaling up: replicas and MONGO_MEMBERS together).
const known = rs.conf().members.map((m) => m.host);
for (let i = 0; i < members; i++) {
  if (!known.includes(host(i))) {
    rs.add(host(i));
    print(`member ${host(i)} added`);
  }
}
