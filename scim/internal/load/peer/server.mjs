// The peer SCIM server of `make bench-scim`: scimmy + scimmy-routers on
// express, with in-memory Users and Groups (Maps, plus a userName index for
// uniqueness). Lists are filtered in the egress handler with scimmy's own
// Filter.match. Listens on 127.0.0.1:$PORT and prints "listening URL".
import express from "express";
import SCIMMY from "scimmy";
import SCIMMYRouters from "scimmy-routers";

const TOKEN = process.env.PEER_TOKEN || "peer-token";
const users = new Map(), groups = new Map(), userNames = new Map();
let seq = 0;
const notFound = (id) => new SCIMMY.Types.Error(404, null, `Resource ${id} not found`);

SCIMMY.Resources.declare(SCIMMY.Resources.User)
  .ingress((resource, instance) => {
    const now = new Date();
    const lc = String(instance.userName).toLowerCase();
    const holder = userNames.get(lc);
    if (holder !== undefined && holder !== resource.id) throw new SCIMMY.Types.Error(409, "uniqueness", "userName is taken");
    let id = resource.id, created = now;
    if (id) {
      const old = users.get(id);
      if (!old) throw notFound(id);
      created = old.meta.created;
      userNames.delete(String(old.userName).toLowerCase());
    } else {
      id = String(++seq);
    }
    const u = {...JSON.parse(JSON.stringify(instance)), id, meta: {created, lastModified: now}};
    users.set(id, u);
    userNames.set(lc, id);
    return u;
  })
  .egress((resource) => {
    if (resource.id) {
      const u = users.get(resource.id);
      if (!u) throw notFound(resource.id);
      return u;
    }
    const all = [...users.values()];
    return resource.filter ? resource.filter.match(all) : all;
  })
  .degress((resource) => {
    const u = users.get(resource.id);
    if (!u) throw notFound(resource.id);
    users.delete(resource.id);
    userNames.delete(String(u.userName).toLowerCase());
  });

SCIMMY.Resources.declare(SCIMMY.Resources.Group)
  .ingress((resource, instance) => {
    const now = new Date();
    let id = resource.id, created = now;
    if (id) {
      const old = groups.get(id);
      if (!old) throw notFound(id);
      created = old.meta.created;
    } else {
      id = String(++seq);
    }
    const g = {...JSON.parse(JSON.stringify(instance)), id, meta: {created, lastModified: now}};
    groups.set(id, g);
    return g;
  })
  .egress((resource) => {
    if (resource.id) {
      const g = groups.get(resource.id);
      if (!g) throw notFound(resource.id);
      return g;
    }
    const all = [...groups.values()];
    return resource.filter ? resource.filter.match(all) : all;
  })
  .degress((resource) => {
    if (!groups.delete(resource.id)) throw notFound(resource.id);
  });

const app = express();
app.use("/scim/v2", new SCIMMYRouters({
  type: "bearer",
  docUri: "https://example.invalid/peer",
  handler: (req) => {
    if (req.header("Authorization") !== `Bearer ${TOKEN}`) throw new Error("unauthorized");
    return "bench";
  },
}));
const server = app.listen(Number(process.env.PORT || 0), "127.0.0.1", () => {
  console.log(`listening http://127.0.0.1:${server.address().port}/scim/v2`);
});
