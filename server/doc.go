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
//
// With Options.Admin (admin.go) the server also has the admin API (users,
// grants, audit, catalogue, firms, held plans and approve; api_*.go) and
// the report pages under /ui (ui*.go, templates and assets embedded from
// ui/). Bearer tokens are the static ones or, with OIDC configured, the
// issuer's JWTs (authn.go); pages use a signed session cookie from the
// code+PKCE sign-in and a CSRF token per form (session.go, ui_login.go);
// signing out records a session.logout audit event keyed by a hash of the
// session id, and a session with one is refused (every replica, across
// restarts), so a copied cookie dies with the logout.
// The permission rules (firm admins see and change only their own firm,
// never admin roles; support does everything) are in authz.go and are
// enforced by the API handlers, which the pages call too. Decisions made
// where the issue is silent: a user belongs to a firm through the primary
// firm or a firm profile (search and visibility alike); an unknown user
// id is 403 for a caller who cannot see every firm; a firm admin cannot
// remove an admin role either; the run chart counts as "changes" the
// counts named like a write (created, updated, gone, revoke, ...) and
// as failures "failed" (or 1 for a failed run); history on the user page
// is the newest 100 events; a firm admin reads a user's history (API,
// CSV, pages) without the grant and firm-profile events of firms they do
// not manage.
package server
