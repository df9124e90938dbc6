// docker compose: run once by the mongo image when its data volume is new, logged in as the
// administrator of MONGO_INITDB_ROOT_*. The services' own user: readWrite on their database only.
db.getSiblingDB("admin").createUser({
  user: process.env.MONGO_APP_USERNAME,
  pwd: process.env.MONGO_APP_PASSWORD,
  roles: [{ role: "readWrite", db: process.env.MONGO_DB }],
});
