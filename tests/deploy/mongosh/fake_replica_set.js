// A stand-in for mongosh and a MongoDB replica set, just large enough to run
// k8s/base/mongodb-bootstrap.js here, where no mongod runs: node fake_replica_set.js <script>
// with the scenario as JSON on stdin. It keeps MongoDB's rules that the script depends on:
// initiation needs every listed member to answer, users and members are written only on the
// primary and only when logged in (but for the first user, over localhost), a member that
// does not answer cannot be added. It prints the final state as JSON.
const fs = require("fs");
const vm = require("vm");

const scenario = JSON.parse(fs.readFileSync(0, "utf8"));
const state = {
  initiated: scenario.initiated || false,
  members: scenario.members || [],
  primary: scenario.primary || null,
  answering: new Set(scenario.answering),
  users: scenario.users || {},
  printed: [],
};
const self = "mongodb-0.mongodb:27017";

function fail(message, codeName) {
  const error = new Error(message);
  error.codeName = codeName;
  throw error;
}

function connection(address, local) {
  if (!state.answering.has(address)) { fail(`${address} does not answer`, "ServerSelectionError"); }
  const conn = { address, local, authed: false };
  const primary = () => state.primary === address;
  const mayCreateUser = () => conn.authed || (local && Object.keys(state.users).length === 0);
  const requirePrimary = () => { if (!primary()) { fail(`${address} is not primary`, "NotWritablePrimary"); } };
  const requireAuth = () => { if (!conn.authed) { fail("requires authentication", "Unauthorized"); } };
  const admin = {
    auth(user, pwd) {
      if (!state.users[user] || state.users[user].pwd !== pwd) { fail("Authentication failed", "AuthenticationFailed"); }
      conn.authed = true;
      return { ok: 1 };
    },
    createUser(spec) {
      requirePrimary();
      if (!mayCreateUser()) { fail("requires authentication", "Unauthorized"); }
      if (state.users[spec.user]) { fail("user exists", "Location51003"); }
      state.users[spec.user] = { pwd: spec.pwd, roles: spec.roles };
    },
    getUser(user) { requireAuth(); return state.users[user] || null; },
    updateUser(user, spec) { requirePrimary(); requireAuth(); Object.assign(state.users[user], spec); },
  };
  conn.db = {
    getSiblingDB(name) { if (name !== "admin") { fail("only admin here"); } return admin; },
    hello() { return { isWritablePrimary: primary(), primary: state.primary || undefined }; },
    runCommand(command) { if (command.ping !== 1) { fail("only ping here"); } return { ok: 1 }; },
  };
  conn.db._conn = conn;
  return conn;
}

function connect(url) {
  const match = /^mongodb:\/\/(?:([^:@]+):([^@]+)@)?([^/]+)\//.exec(url);
  const conn = connection(match[3], false);
  if (match[1]) { conn.db.getSiblingDB("admin").auth(decodeURIComponent(match[1]), decodeURIComponent(match[2])); }
  return conn.db;
}

const context = {
  process: { env: scenario.env },
  print: (message) => state.printed.push(String(message)),
  sleep: () => {},
  connect,
  db: connection(self, true).db,
};
const conn = () => context.db._conn;
context.rs = {
  status() { if (!state.initiated) { fail("no replset config has been received", "NotYetInitialized"); } return { ok: 1 }; },
  initiate(config) {
    if (state.initiated) { fail("already initialized", "AlreadyInitialized"); }
    for (const member of config.members) {
      if (!state.answering.has(member.host)) { fail(`${member.host} does not answer`, "NodeNotFound"); }
    }
    state.initiated = true;
    state.members = config.members.map((m) => m.host);
    state.primary = self;
  },
  conf() { if (!conn().authed) { fail("requires authentication", "Unauthorized"); } return { members: state.members.map((host) => ({ host })) }; },
  add(host) {
    if (state.primary !== conn().address) { fail("not primary", "NotWritablePrimary"); }
    if (!conn().authed) { fail("requires authentication", "Unauthorized"); }
    if (!state.answering.has(host)) { fail(`${host} does not answer`, "NodeNotFound"); }
    state.members.push(host);
  },
};

let error = null;
try {
  vm.runInNewContext(fs.readFileSync(process.argv[2], "utf8"), context, { filename: "bootstrap.js" });
} catch (e) {
  error = e.message;
}
process.stdout.write(JSON.stringify({ ...state, answering: [...state.answering], error }));
