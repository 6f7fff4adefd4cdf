package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"

	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/store/sqlstore"
	"github.com/dirsyncd/dirsyncd/store/storetest"
)

func newStore(t testing.TB) store.Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "dirsyncd.db"), Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newStore(t) })
}

func TestCaseAccessConformance(t *testing.T) {
	storetest.RunCaseAccess(t, func(t *testing.T) store.Store { return newStore(t) })
}

func TestConformanceMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(context.Background(), ":memory:", Options{})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func migrated(b *testing.B) store.Store {
	s := newStore(b)
	if err := s.Migrate(context.Background()); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkUpsertUsers100k: go test -run '^$' -bench UpsertUsers -benchtime 1x ./store/sqlite/
func BenchmarkUpsertUsers100k(b *testing.B) {
	storetest.BenchUpsertUsers(b, migrated, 100_000, 10_000)
}

// BenchmarkCreateUser: go test -run '^$' -bench CreateUser ./store/sqlite/
func BenchmarkCreateUser(b *testing.B) {
	storetest.BenchCreateUser(b, migrated(b))
}

func TestMigrations(t *testing.T) {
	storetest.RunMigrations(t, Migrations(), func(t *testing.T) func(fs.FS) store.Store {
		path := filepath.Join(t.TempDir(), "m.db")
		return func(migs fs.FS) store.Store {
			s, err := Open(context.Background(), path, Options{Migrations: migs})
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		}
	})
}

func TestOpenSettings(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "x.db"), Options{BusyTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	db := s.DB().(*stdDB)
	for _, c := range []struct {
		db           *sql.DB
		pragma, want string
	}{
		{db.w, "journal_mode", "wal"},
		{db.w, "foreign_keys", "1"},
		{db.w, "busy_timeout", "3000"},
		{db.r, "journal_mode", "wal"},
		{db.r, "foreign_keys", "1"},
		{db.r, "query_only", "1"},
		{db.w, "cache_size", "-16384"}, // KiB: SQLite's memory is outside the Go heap (WriterCache)
		{db.r, "cache_size", "-16384"},
	} {
		var got string
		if err := c.db.QueryRowContext(ctx, "PRAGMA "+c.pragma).Scan(&got); err != nil || got != c.want {
			t.Errorf("PRAGMA %s = %q (%v), want %q", c.pragma, got, err, c.want)
		}
	}
	if n := db.w.Stats().MaxOpenConnections; n != 1 {
		t.Errorf("writer pool allows %d connections, want 1", n)
	}
	// Reads through the store do not wait for an open write transaction.
	err = s.Update(ctx, audit.Meta{Actor: "t"}, func(ctx context.Context, tx store.Tx) error {
		u := directory.User{UserName: "alice"}
		if err := tx.CreateUser(ctx, &u); err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := s.GetUserByUserName(rctx, "alice") // outside the tx: not visible yet, and not blocked
		if !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("read beside the writer: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestLookupsUseIndexes(t *testing.T) {
	ctx := context.Background()
	s := newStore(t).(*sqlstore.Store)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	storetest.SeedIndexFixture(t, s)
	if err := s.TestingExecRaw(ctx, "ANALYZE"); err != nil {
		t.Fatal(err)
	}
	db := s.DB().(*stdDB)
	tests := []struct{ query, index, not string }{
		{"SELECT id FROM users u WHERE u.user_name_lc = 'a' AND u.deleted_at IS NULL", "users_user_name_uq", ""},
		{"SELECT id FROM users u WHERE u.email_lc = 'a' AND u.email_lc <> '' AND u.deleted_at IS NULL", "users_email_uq", ""},
		{"SELECT id FROM users u WHERE u.deleted_at IS NULL AND u.external_id = 'a'", "users_external_id_idx", ""},
		{"SELECT 1 FROM user_emails e WHERE e.value_lc = 'a'", "user_emails_value_idx", ""},
		{"SELECT user_id FROM group_members WHERE user_id = 'a'", "group_members_user_idx", ""},
		{"SELECT seq FROM audit_events WHERE object_id = 'a' ORDER BY seq", "audit_events_object_idx", ""},
		// ListFingerprints: the users' versions come from the covering index, not the table.
		{`SELECT f.link_key, f.user_id, f.digest, f.user_version, u.version, u.deleted_at IS NOT NULL
FROM sync_fingerprints f LEFT JOIN users AS u` + Dialect.UserVersionIndex + ` ON u.id = f.user_id
WHERE f.source = 'a' ORDER BY f.user_id, f.link_key`, "COVERING INDEX users_id_version_idx", ""},
		// ScanLinks: the table in storage order, not a seek per link from the primary key's index.
		{"SELECT user_id, source, link_key, dn, gone_at, last_seen_at FROM source_links" + Dialect.NoIndex + " WHERE source = 'a'",
			"SCAN source_links", "INDEX"},
	}
	for _, tc := range tests {
		rows, err := db.r.QueryContext(ctx, "EXPLAIN QUERY PLAN "+tc.query)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		_ = rows.Close()
		if p := strings.Join(plan, "; "); !strings.Contains(p, tc.index) {
			t.Errorf("%s: plan %q does not use %s", tc.query, p, tc.index)
		} else if tc.not != "" && strings.Contains(p, tc.not) {
			t.Errorf("%s: plan %q uses an %s", tc.query, p, tc.not)
		}
	}
}
