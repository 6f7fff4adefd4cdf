// Package store declares the Store interface through which every other
// package reads and writes dirsyncd's state, the query types (Filter, UserQuery,
// GroupQuery) and the sentinel errors backends map driver errors to.
//
// Audit by construction: every write happens inside Store.Update, whose
// audit.Meta names the actor; each mutating Tx method writes its audit event
// in that same transaction, so a change without its audit record cannot
// exist, and a failed audit write rolls the change back. A write that
// changes nothing (same values) writes nothing and records no event.
//
// Backends: store/sqlite (embedded default, modernc.org/sqlite) and
// store/postgres (pgx v5); both share the SQL in store/sqlstore and pass the
// same conformance suite, store/storetest.
package store
