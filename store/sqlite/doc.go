// Package sqlite is the embedded store backend (modernc.org/sqlite, pure
// Go): Open returns a sqlstore.Store over a database file in WAL mode with
// foreign keys, busy_timeout and case-sensitive LIKE. Writes go through one
// connection whose transactions BEGIN IMMEDIATE — the single writer, which
// serialises the audit chain; reads use a small read-only pool. ":memory:"
// gives a private in-memory database on one connection (for tests; a
// temp-file database is closer to production). Times are stored as integer
// microseconds since the epoch. The schema lives in migrations/ (numbered,
// embedded; 0001-0009 foundation, other ranges reserved per feature).
// Every connection keeps its 256 most recently used single statements
// prepared (stmtcache.go): the driver would otherwise parse and plan each
// statement anew, which was ~30% of the CPU of the SCIM load run.
package sqlite
