// Package postgres is the production store backend (pgx v5, pgxpool): Open
// retries connecting with backoff until a deadline and reports failures
// without the password; the returned sqlstore.Store shares all SQL with the
// SQLite backend. Migrations (migrations/, numbered and embedded) run under
// a transaction-scoped advisory lock; the audit chain head is a row locked
// FOR UPDATE. Times are timestamptz, JSON columns use json (kept byte for
// byte, as the audit hash needs), sortable text uses COLLATE "C".
//
// Round trips (lazytx.go): a transaction's BEGIN is sent in one pgx
// pipeline with its first statement, and its COMMIT with its last one (the
// audit flush, sqlstore.ExecCommitter), so an interactive write of one
// statement and its audit event costs 2 round trips instead of 5: the
// flush locks the audit head, seals and inserts the events in one statement
// (sqlstore's flushChainInSQL), and a SCIM PUT's UPDATE can ride with it.
// Migration 0030 adds a partial index so that SCIM's externalId lookup
// plans well before the tables have statistics. An error inside a pipeline skips the rest of it, so a COMMIT
// never follows a failed statement.
//
// Plans (postgres.go, planFor): statements are prepared and cached by pgx,
// except those with a long list argument (bulk reads by key), which run
// unprepared so that PostgreSQL never reuses a generic plan made while a
// table was small.
package postgres
