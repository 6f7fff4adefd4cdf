// Package storetest is the one conformance suite for store.Store backends:
// Run(t, newStore) checks every method and rule (case-insensitive
// uniqueness, versions, soft delete, each filter operator and value path,
// paging, memberships, grants, runs, cursors, leases with an injected clock,
// and the audit log: an event per change, none for no-ops, rollback when the
// audit write fails, tamper detection, concurrent writers). Backends give it
// test-only access through Hooks (raw SQL, clock, dialect name). It also
// holds the shared benchmark bodies (BenchUpsertUsers, BenchCreateUser).
package storetest
