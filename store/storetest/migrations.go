package storetest

import (
	"context"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/store"
)

// RunMigrations checks the migration runner. newDB returns, for one fresh
// database, a function opening a store over it with the given migration
// files; base holds the backend's real migrations.
func RunMigrations(t *testing.T, base fs.FS, newDB func(t *testing.T) func(migs fs.FS) store.Store) {
	ctx := context.Background()
	with := func(extra map[string]string) fs.FS {
		m := fstest.MapFS{}
		entries, err := fs.ReadDir(base, ".")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			b, err := fs.ReadFile(base, e.Name())
			if err != nil {
				t.Fatal(err)
			}
			m[e.Name()] = &fstest.MapFile{Data: b}
		}
		for name, sql := range extra {
			m[name] = &fstest.MapFile{Data: []byte(sql)}
		}
		return m
	}
	t.Run("GapsAppliedInOrderOnce", func(t *testing.T) {
		open := newDB(t)
		s := open(with(map[string]string{
			"9015_scim_extra.sql":   "CREATE TABLE scim_extra (id INTEGER PRIMARY KEY);",
			"9031_cwa_extra.sql":    "ALTER TABLE scim_extra ADD COLUMN cwa TEXT;", // needs 9015 first
			"9050_caseaccess_x.sql": "INSERT INTO scim_extra (id, cwa) VALUES (1, 'x');",
		}))
		if err := s.Migrate(ctx); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		if err := s.Migrate(ctx); err != nil { // idempotent: the INSERT is not repeated
			t.Fatalf("second migrate: %v", err)
		}
		if err := s.(Hooks).TestingExecRaw(ctx, "INSERT INTO scim_extra (id, cwa) VALUES (2, 'y')"); err != nil {
			t.Fatalf("table from 9015/9031 missing: %v", err)
		}
		if err := s.(Hooks).TestingExecRaw(ctx, "INSERT INTO scim_extra (id, cwa) VALUES (1, 'z')"); err == nil {
			t.Fatal("row 1 missing: 9050 did not run once")
		}
		// A later binary adds a migration inside a gap: it is applied.
		s2 := open(with(map[string]string{
			"9015_scim_extra.sql":   "CREATE TABLE scim_extra (id INTEGER PRIMARY KEY);",
			"9031_cwa_extra.sql":    "ALTER TABLE scim_extra ADD COLUMN cwa TEXT;",
			"9050_caseaccess_x.sql": "INSERT INTO scim_extra (id, cwa) VALUES (1, 'x');",
			"9020_ldap_x.sql":       "CREATE TABLE ldap_x (id INTEGER PRIMARY KEY);",
		}))
		if err := s2.Migrate(ctx); err != nil {
			t.Fatalf("migrate with a new file in a gap: %v", err)
		}
		if err := s2.(Hooks).TestingExecRaw(ctx, "INSERT INTO ldap_x (id) VALUES (1)"); err != nil {
			t.Fatalf("9020 not applied: %v", err)
		}
	})
	t.Run("EditedMigrationRefused", func(t *testing.T) {
		open := newDB(t)
		if err := open(with(map[string]string{"9011_x.sql": "CREATE TABLE x (id INTEGER);"})).Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		err := open(with(map[string]string{"9011_x.sql": "CREATE TABLE x (id INTEGER, y INTEGER);"})).Migrate(ctx)
		if err == nil || !strings.Contains(err.Error(), "9011_x.sql") || !strings.Contains(err.Error(), "edited") {
			t.Fatalf("edited migration: err = %v", err)
		}
		err = open(with(nil)).Migrate(ctx)
		if err == nil || !strings.Contains(err.Error(), "9011_x.sql") {
			t.Fatalf("unknown applied migration: err = %v", err)
		}
	})
	t.Run("PendingMigrations", func(t *testing.T) {
		open := newDB(t)
		entries, err := fs.ReadDir(base, ".") // sorted by name: NNNN_ is version order
		if err != nil {
			t.Fatal(err)
		}
		var all []string
		for _, e := range entries {
			all = append(all, e.Name())
		}
		s := open(with(nil))
		got, err := pending(t, s).PendingMigrations(ctx)
		if err != nil || !slices.Equal(got, all) {
			t.Fatalf("fresh database: pending = %v, %v; want every migration %v", got, err, all)
		}
		// It only read: no schema_migrations, nothing of 0001.
		if err := s.(Hooks).TestingExecRaw(ctx, "SELECT count(*) FROM schema_migrations"); err == nil ||
			!strings.Contains(strings.ToLower(err.Error()), "schema_migrations") {
			t.Fatalf("PendingMigrations created schema_migrations: %v", err)
		}
		if err := s.(Hooks).TestingExecRaw(ctx, "INSERT INTO cursors (source, value, updated_at) VALUES ('a', 'b', NULL)"); err == nil ||
			!strings.Contains(strings.ToLower(err.Error()), "cursors") {
			t.Fatalf("PendingMigrations applied a migration: %v", err)
		}
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		if got, err := pending(t, s).PendingMigrations(ctx); err != nil || len(got) != 0 {
			t.Fatalf("after Migrate: pending = %v, %v; want none", got, err)
		}
		// A later binary with one more file: just that one.
		later := open(with(map[string]string{"9013_later.sql": "CREATE TABLE later (id INTEGER);"}))
		if got, err := pending(t, later).PendingMigrations(ctx); err != nil || !slices.Equal(got, []string{"9013_later.sql"}) {
			t.Fatalf("one new file: pending = %v, %v", got, err)
		}
	})
	t.Run("PendingMigrationsRefusesWhatMigrateRefuses", func(t *testing.T) {
		open := newDB(t)
		if err := open(with(map[string]string{"9011_x.sql": "CREATE TABLE x (id INTEGER);"})).Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		edited := open(with(map[string]string{"9011_x.sql": "CREATE TABLE x (id INTEGER, y INTEGER);"}))
		_, err := pending(t, edited).PendingMigrations(ctx)
		if err == nil || !strings.Contains(err.Error(), "9011_x.sql") || !strings.Contains(err.Error(), "edited") {
			t.Fatalf("edited migration: err = %v", err)
		}
		_, err = pending(t, open(with(nil))).PendingMigrations(ctx)
		if err == nil || !strings.Contains(err.Error(), "9011_x.sql") || !strings.Contains(err.Error(), "does not know") {
			t.Fatalf("unknown applied migration: err = %v", err)
		}
	})
	t.Run("FailedMigrationAppliesNothing", func(t *testing.T) {
		open := newDB(t)
		s := open(with(map[string]string{"9012_bad.sql": "CREATE TABLE ok_table (id INTEGER); THIS IS NOT SQL;"}))
		if err := s.Migrate(ctx); err == nil || !strings.Contains(err.Error(), "9012_bad.sql") {
			t.Fatalf("bad migration: err = %v", err)
		}
		// Nothing of it (nor of 0001, same transaction) was kept.
		if err := s.(Hooks).TestingExecRaw(ctx, "INSERT INTO cursors (source, value, updated_at) VALUES ('a', 'b', NULL)"); err == nil ||
			!strings.Contains(strings.ToLower(err.Error()), "cursors") {
			t.Fatalf("schema half-applied: %v", err)
		}
		good := open(with(nil))
		if err := good.Migrate(ctx); err != nil {
			t.Fatalf("migrate after failure: %v", err)
		}
	})
	t.Run("ConcurrentMigrate", func(t *testing.T) {
		open := newDB(t)
		var wg sync.WaitGroup
		errs := make([]error, 3)
		stores := make([]store.Store, 3)
		for i := range stores {
			stores[i] = open(with(nil))
		}
		for i := range stores {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = stores[i].Migrate(ctx) }()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("concurrent migrate: %v", err)
			}
		}
		err := stores[0].Update(ctx, audit.Meta{Actor: "t"}, func(ctx context.Context, tx store.Tx) error { return tx.SetCursor(ctx, "a", "b") })
		if err != nil {
			t.Fatalf("store unusable after concurrent migrate: %v", err)
		}
	})
}

// pendingLister is the read-only migration check a backend offers for dry
// runs (sqlstore.Store.PendingMigrations).
type pendingLister interface {
	PendingMigrations(ctx context.Context) ([]string, error)
}

func pending(t *testing.T, s store.Store) pendingLister {
	t.Helper()
	p, ok := s.(pendingLister)
	if !ok {
		t.Fatalf("%T has no PendingMigrations", s)
	}
	return p
}
