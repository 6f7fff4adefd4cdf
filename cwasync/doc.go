// Package cwasync pulls the legacy CWA directory (the agency's Provider Data
// API over CWA snapshots) into the store: firms, offices and legacy logins
// with their office codes, which mapping rules use as facts (provenance
// "cwa").
//
// Client speaks the API (DOMAIN.md, "The legacy CWA side"):
//
//	GET /provider-offices/snapshot                   {"offices":[{firmNumber, firmName, firmType, parentFirmNumber,
//	                                                   officeAccountNumber, officeAddressLine1..3, officeAddressCity,
//	                                                   officeAddressPostcode}]}
//	GET /provider-firms/{firmNumber}/provider-users  {"users":[{userLogin, firstName, lastName, email}]}
//	GET /provider-users/{userLogin}/provider-offices {"officeCodes":[{"firmOfficeCode":"0Q731M"}]}
//	GET /provider-users/exists?userEmail=E           {"user":{"userLogin":"..."}}, 404 when none
//
// The provider-users list shape is not public; the one above is dirsyncd's
// decision, shared with cwasync/cwafake. The API key goes in a header
// (X-Authorization by default) and is never logged. Each attempt has a
// timeout; 5xx, 429 (honouring Retry-After), connection errors and
// truncated bodies are retried with exponential backoff and jitter; the
// service's out-of-hours refusal (503 with code OUT_OF_HOURS, or a
// Retry-After longer than the client may wait) fails with ErrUnavailable;
// 401/403 fail with ErrUnauthorized; a body that is not the documented JSON
// (or lacks its top-level array) fails with ErrMalformed; a 404 for a firm
// or login of the snapshot fails with ErrNotFound — never read as "no
// users" or "no offices".
//
// ApplyRules applies the agency's snapshot rules (see its comment): bad
// rows are reported, not imported. Syncer.Sync then reads every firm's
// logins and every login's office codes with bounded concurrency, links
// logins to users by e-mail (case-insensitive), compares everything with
// the store and writes only the differences, in one store.Update with actor
// "cwa" and the run id, together with the run report (Tx.AddRunItems) and
// the cursor (the last good counts). Nothing is ever deleted:
//   - a firm missing from the snapshot is disabled;
//   - an office missing from it is made inactive, and an office that moved
//     firm is updated; in both cases the legacy logins lose that office
//     code (a login only keeps codes of active offices of its own firm), so
//     grants with legacy office scope narrow at the next reconcile;
//   - a login CWA no longer lists keeps its record but loses its office
//     codes and its user (and its "cwa" link is marked gone);
//   - but a firm the snapshot lists only in rejected rows, and an office it
//     lists for two firms, are present, not missing (Snapshot.Held,
//     HeldOffices): what the store holds of them, the firm's logins
//     included, is kept as it is.
//
// Safety: any failed or partial read (after retries), malformed JSON or a
// snapshot with fewer firms, offices or legacy logins than MinFraction (default 0.5;
// ShrinkGuardOff, config cwa.minFraction: 0, switches this check off) of
// the last good one aborts the run before anything is written; the run
// then gets one item, action "failed" on object "run", saying why. A
// repeat with no changes writes nothing.
//
// Performance (BENCHMARKS.md, "CWA sync"): the API's shape costs one
// request per firm and per login, so the client's cost per request decides
// the run: its transport is fasthttp (transport.go says why, and what it
// keeps by hand: cancellation, proxies, no hidden retries), the requests
// run on cwa.concurrency long-lived workers (default 16), and the
// per-firm and per-login answers' usual forms are decoded without
// reflection (anything else goes to encoding/json). On PostgreSQL the new
// rows and links go in with COPY (store/sqlstore/cwa.go), as do the audit
// events and run items, whose rows (sealing, marshalling) are made while
// the rows before them stream to the server. The writes are not overlapped with the reads, although the run
// would stay one transaction: against the real CWA the reads take minutes
// (55,000 requests at network latency), and a transaction open that long
// would hold its row locks, and from its first audit flush the audit chain
// head, which every other writer (SCIM, reconcile) waits for. On the
// benchmark machine the reads keep both cores busy anyway, so little of
// PostgreSQL's work could hide behind them.
package cwasync
