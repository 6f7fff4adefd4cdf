// Package sqlstore is the one SQL implementation of store.Store, shared by
// the SQLite and PostgreSQL backends. It works over a tiny DB interface
// (Exec/Query/QueryRow plus Begin/Commit/Rollback) that each backend adapts
// (database/sql for modernc.org/sqlite, pgxpool for PostgreSQL), and a
// Dialect holding what differs: placeholders, row locks, the migration lock,
// time encoding, IN-lists and the classification of driver errors.
//
// SQL conventions: statements use '?' placeholders (rebound to $n for
// PostgreSQL); case-insensitive rules (userName, e-mail, emails.value,
// displayName) compare *_lc columns holding the Go-lowercased value, so both
// backends agree and the lookups are plain index probes; LIKE patterns escape
// % and _ (ESCAPE '\'); filters (store.Filter) are translated to
// parameterised SQL, never evaluated in memory; lists order by the sort
// field then id.
//
// Audit by construction: every mutating Tx method buffers its audit event in
// the transaction; before commit the events are sealed into the hash chain
// (audit.Seal) after the chain head — a single audit_head row read with
// SELECT ... FOR UPDATE on PostgreSQL (SQLite has a single writer whose
// transactions BEGIN IMMEDIATE) — inserted with multi-row INSERTs, and the
// head advanced, all in the same transaction; if any of it fails nothing is
// committed. A write that changes nothing records nothing. The audit table
// is append-only (triggers refuse UPDATE and DELETE). VerifyAudit walks the
// chain with audit.Verifier and also compares its end with the head, so
// deleting the newest events is detected too.
//
// What is audited (action, object type, object id):
//   - users: user.create, user.update, user.delete (user, user id);
//     UpsertUsers writes the same per-user events.
//   - links: link.put, link.gone, link.delete (user, user id); a PutLink
//     that only moves LastSeenAt is bookkeeping and records nothing.
//   - groups: group.create, group.update, group.delete (the delete event
//     counts the removed members instead of one event per member),
//     group.member.add/remove (one per member; after/before {"userId"}),
//     group.child.add/remove (group, parent id).
//   - firm.put, office.put, legacy_login.put, firm_membership.put/remove
//     (user, user id), grant.put, grant.delete (grant, user id — so a user's
//     history shows their grants).
//   - run.create, run.update (run, run id); cursor.set (cursor, source):
//     a cursor decides what the next delta sync sees.
//   - Record writes free-form events.
//
// Not audited: AddRunItems (the items are the run's report of changes that
// are themselves audited) and leases (leader-election bookkeeping).
//
// Concurrency: on PostgreSQL the chain head is locked when a transaction's
// events are flushed — normally just before commit, so writers serialise
// only for that short step; a transaction with more than 5000 events
// flushes early and then holds the head until it commits (bulk writers
// should do their row work first, as UpsertUsers does). Rows read before
// an update are locked FOR UPDATE. Unique rules are checked first
// (clear ErrConflict messages) and enforced again by unique indexes.
//
// Migrations: each backend embeds numbered NNNN_name.sql files; Migrate
// applies the missing ones in order in one transaction under a lock,
// records version and SHA-256, accepts gaps (ranges are reserved per
// feature) and refuses to run when an applied file changed or is unknown.
package sqlstore
