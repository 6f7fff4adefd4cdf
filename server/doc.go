// Package server is dirsyncd's HTTP side: the listener and its middleware
// (request id, access log, panic recovery, body size limit, Prometheus
// metrics, bearer-token auth with a scope per route and a per-token rate
// limit answering 429), the health and
// metrics endpoints and the admin API under /api/v1.
//
// Routes:
//
//	GET  /healthz             no auth   liveness: the process serves HTTP
//	GET  /readyz              no auth   readiness: the store answers Ping
//	GET  /metrics             admin:read  Prometheus exposition
//	GET  /api/v1/runs         admin:read  runs, newest first (?job=&status=&before=&limit=)
//	GET  /api/v1/runs/{id}    admin:read  one run and a page of its items (?action=&after=&limit=)
//	POST /api/v1/runs         admin:write {"job":"name"}: trigger now, 202 {"id":...}
//
// /metrics needs a token with admin:read: point Prometheus at it with
// `authorization: {credentials_file: ...}` holding such a token.
//
// Other packages mount their handlers with Server.Handle (SCIM at
// /scim/v2/ with scope "scim"); every route gets the same middleware.
// Errors are JSON: {"error":{"code":"...","message":"..."}}. The
// Authorization header is never logged.
package server
