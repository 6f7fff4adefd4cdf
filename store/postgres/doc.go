// Package postgres is the production store backend (pgx v5, pgxpool): Open
// retries connecting with backoff until a deadline and reports failures
// without the password; the returned sqlstore.Store shares all SQL with the
// SQLite backend. Migrations (migrations/, numbered and embedded) run under
// a transaction-scoped advisory lock; the audit chain head is a row locked
// FOR UPDATE. Times are timestamptz, JSON columns use json (kept byte for
// byte, as the audit hash needs), sortable text uses COLLATE "C".
package postgres
