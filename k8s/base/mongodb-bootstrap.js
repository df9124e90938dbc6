// Run by the `bootstrap` container of mongodb-0 (k8s/base/mongodb.yaml) against its own
// mongod over localhost. Every step checks before it acts, so running it again is harmless;
// a thrown error makes the container retry after 5 s.
const env = process.env;
const members = parseInt(env.MONGO_MEMBERS, 10);
const host = (i) => `mongodb-${i}.mongodb:27017`;

function answers(address) {
  try {
    const other = connect(`mongodb://${address}/admin?directConnection=true&serverSelectionTimeoutMS=2000`);
    return other.runCommand({ ping: 1 }).ok === 1;
  } catch (e) {
    return false;
  }
}

// 1. Log in as the administrator; before any user exists that fails, and the localhost
//    exception lets this connection initiate the replica set and create the first user.
let loggedIn = false;
try {
  db.getSiblingDB("admin").auth(env.MONGO_ROOT_USERNAME, env.MONGO_ROOT_PASSWORD);
  loggedIn = true;
} catch (e) {
  print("no administrator yet: using the localhost exception");
}

// 2. The replica set, initiated with this member alone: initiation needs every listed member to
//    answer, and with fewer schedulable nodes than members (the anti-affinity is hard) the
//    others may never come. They join in step 5, each once it answers.
try {
  rs.status();
} catch (e) {
  if (e.codeName !== "NotYetInitialized") { throw e; }
  rs.initiate({ _id: "rs0", members: [{ _id: 0, host: host(0) }] });
  print("replica set rs0 initiated with this member");
}

// 3. Users and members are written on the primary: this member after initiation, or another
//    one when this member came back as a secondary.
let hello = db.hello();
for (let i = 0; !hello.primary; i++) {
  if (i >= 60) { throw new Error("the replica set elected no primary within 60 s"); }
  sleep(1000);
  hello = db.hello();
}
if (!hello.isWritablePrimary) {
  if (!loggedIn) { throw new Error(`${hello.primary} is primary, but the administrator cannot log in`); }
  const user = encodeURIComponent(env.MONGO_ROOT_USERNAME);
  const password = encodeURIComponent(env.MONGO_ROOT_PASSWORD);
  db = connect(`mongodb://${user}:${password}@${hello.primary}/admin?authSource=admin&directConnection=true`);
  print(`this member is a secondary: working on the primary ${hello.primary}`);
}
const admin = db.getSiblingDB("admin");
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

// 5. Members up to MONGO_MEMBERS, each added once it answers; while one does not (its pod is
//    Pending, say), the run fails and is retried, the others already in service.
const known = rs.conf().members.map((m) => m.host);
const waiting = [];
for (let i = 0; i < members; i++) {
  if (known.includes(host(i))) { continue; }
  if (answers(host(i))) {
    rs.add(host(i));
    print(`member ${host(i)} added`);
  } else {
    waiting.push(host(i));
  }
}
if (waiting.length) { throw new Error(`waiting for ${waiting.join(", ")} to answer`); }
