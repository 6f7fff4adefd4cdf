package postgres

import (
	"context"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/internal/testenv"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/store/storetest"
)

func newStore(t testing.TB) store.Store {
	t.Helper()
	dsn := testenv.Postgres(t)
	s, err := Open(context.Background(), dsn, Options{ConnectTimeout: 10 * time.Second})
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

func TestMigrations(t *testing.T) {
	storetest.RunMigrations(t, Migrations(), func(t *testing.T) func(fs.FS) store.Store {
		dsn := testenv.Postgres(t)
		return func(migs fs.FS) store.Store {
			s, err := Open(context.Background(), dsn, Options{Migrations: migs})
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		}
	})
}

func TestOpenGivesUpWithoutLeakingPassword(t *testing.T) {
	// Port 1 on localhost refuses connections: Open retries, then gives up.
	dsn := "postgres://dirsyncd:s3cr3t-pw@127.0.0.1:1/dirsyncd?sslmode=disable&connect_timeout=1"
	start := time.Now()
	_, err := Open(context.Background(), dsn, Options{ConnectTimeout: 700 * time.Millisecond})
	if err == nil {
		t.Fatal("Open succeeded against a closed port")
	}
	if strings.Contains(err.Error(), "s3cr3t-pw") {
		t.Fatalf("error leaks the password: %v", err)
	}
	if !strings.Contains(err.Error(), "127.0.0.1:1/dirsyncd") || !strings.Contains(err.Error(), "giving up after") {
		t.Fatalf("error does not say what failed: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Open took %s, past its deadline", d)
	}
	// A malformed DSN is reported without the password too.
	_, err = Open(context.Background(), "postgres://u:s3cr3t-pw@[bad/x", Options{})
	if err == nil || strings.Contains(err.Error(), "s3cr3t-pw") {
		t.Fatalf("parse error = %v", err)
	}
	// So is a cancelled context.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = Open(ctx, dsn, Options{ConnectTimeout: time.Minute})
	if err == nil || strings.Contains(err.Error(), "s3cr3t-pw") {
		t.Fatalf("cancelled open = %v", err)
	}
}

func migrated(b *testing.B) store.Store {
	s := newStore(b)
	if err := s.Migrate(context.Background()); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkUpsertUsers100k: go test -run '^$' -bench UpsertUsers -benchtime 1x ./store/postgres/
func BenchmarkUpsertUsers100k(b *testing.B) {
	storetest.BenchUpsertUsers(b, migrated, 100_000, 10_000)
}

// BenchmarkCreateUser: go test -run '^$' -bench CreateUser ./store/postgres/
func BenchmarkCreateUser(b *testing.B) {
	storetest.BenchCreateUser(b, migrated(b))
}

func TestLookupsUseIndexes(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.Postgres(t)
	s, err := Open(ctx, dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	storetest.SeedIndexFixture(t, s)
	if err := s.TestingExecRaw(ctx, "ANALYZE"); err != nil {
		t.Fatal(err)
	}
	pool := s.DB().(*pgDB).pool
	tests := []struct{ query, index string }{
		{"SELECT id FROM users u WHERE u.user_name_lc = 'a' AND u.deleted_at IS NULL", "users_user_name_uq"},
		{"SELECT id FROM users u WHERE u.email_lc = 'a' AND u.email_lc <> '' AND u.deleted_at IS NULL", "users_email_uq"},
		{"SELECT id FROM users u WHERE u.deleted_at IS NULL AND u.external_id = 'a'", "users_external_id_live_idx"}, // 0030
		{"SELECT 1 FROM user_emails e WHERE e.value_lc = 'a'", "user_emails_value_idx"},
		{"SELECT user_id FROM group_members WHERE user_id = 'a'", "group_members_user_idx"},
	}
	for _, tc := range tests {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := tx.Query(ctx, "EXPLAIN "+tc.query)
		if err != nil {
			t.Fatal(err)
		}
		p, err := planText(rows)
		_ = tx.Rollback(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(p, tc.index) {
			t.Errorf("%s: plan %q does not use %s", tc.query, p, tc.index)
		}
	}
}
