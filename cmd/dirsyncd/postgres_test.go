package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/internal/testenv"
	"github.com/dirsyncd/dirsyncd/store/postgres"
)

func writePGConfig(t *testing.T, connectTimeout string) string {
	t.Helper()
	t.Chdir("../..") // feature sections' default paths are relative to the repository root
	doc := "store:\n  driver: postgres\n  dsn: env:DIRSYNCD_TEST_CMD_PG_DSN\n  connectTimeout: " + connectTimeout +
		"\nscheduler:\n  jobs:\n    - {name: audit-verify, kind: audit-verify}\n"
	path := filepath.Join(t.TempDir(), "pg.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPostgresRunAndVerify(t *testing.T) {
	t.Setenv("DIRSYNCD_TEST_CMD_PG_DSN", testenv.Postgres(t))
	cfg := writePGConfig(t, "10s")
	if r := run(t, "migrate", "--config", cfg); r.code != 0 {
		t.Fatalf("migrate: %+v", r)
	}
	if r := run(t, "run", "audit-verify", "--config", cfg); r.code != 0 || !strings.Contains(r.stdout, "status:  ok") {
		t.Fatalf("run: %+v", r)
	}
	if r := run(t, "audit", "verify", "--config", cfg); r.code != 0 || !strings.Contains(r.stdout, "intact") {
		t.Fatalf("verify: %+v", r)
	}
	// A userName that is no UUID must not trip the uuid column.
	if r := run(t, "audit", "list", "--config", cfg, "--user", "alice@example.org", "--json"); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("audit list --user: %+v", r)
	}
}

// TestPostgresDryRunUnmigrated: a dry run on an unmigrated database fails
// (exit 1, listing the pending migrations) and leaves it as it was: no
// schema_migrations table; after `migrate` the dry run works.
func TestPostgresDryRunUnmigrated(t *testing.T) {
	dsn := testenv.Postgres(t)
	t.Setenv("DIRSYNCD_TEST_CMD_PG_DSN", dsn)
	cfg := writePGConfig(t, "10s")
	r := run(t, "reconcile", "--dry-run", "--config", cfg)
	if r.code != exitFailure || !strings.Contains(r.stderr, "postgres store lacks") || !strings.Contains(r.stderr, "0001_") ||
		!strings.Contains(r.stderr, "run `dirsyncd migrate` first") {
		t.Fatalf("dry run on an unmigrated database: %+v", r)
	}
	st, err := postgres.Open(context.Background(), dsn, postgres.Options{ConnectTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = st.TestingExecRaw(context.Background(), "SELECT count(*) FROM schema_migrations")
	_ = st.Close()
	if err == nil || !strings.Contains(err.Error(), "schema_migrations") {
		t.Fatalf("the dry run created schema_migrations (select: %v)", err)
	}
	if r := run(t, "migrate", "--config", cfg); r.code != 0 {
		t.Fatalf("migrate: %+v", r)
	}
	if r := run(t, "reconcile", "--dry-run", "--config", cfg); r.code != 0 || !strings.Contains(r.stdout, "dry run: nothing written") {
		t.Fatalf("dry run after migrate: %+v", r)
	}
}

func TestPostgresUnreachable(t *testing.T) {
	// Nothing listens on port 1: the backend retries for connectTimeout,
	// then the command fails with a clear error that hides the password.
	t.Setenv("DIRSYNCD_TEST_CMD_PG_DSN", "postgres://dirsyncd:hunter2-secret@127.0.0.1:1/dirsyncd?sslmode=disable&connect_timeout=1")
	cfg := writePGConfig(t, "1s")
	for _, cmd := range []string{"serve", "migrate"} {
		r := run(t, cmd, "--config", cfg)
		if r.code != 1 || !strings.Contains(r.stderr, "open postgres store") || !strings.Contains(r.stderr, "connectTimeout 1s") {
			t.Fatalf("%s: %+v", cmd, r)
		}
		if strings.Contains(r.stderr, "hunter2-secret") || strings.Contains(r.stdout, "hunter2-secret") {
			t.Fatalf("%s: password leaked: %s", cmd, r.stderr)
		}
	}
}
