package testenv_test

import (
	"context"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dirsyncd/dirsyncd/internal/testenv"
)

// TestPostgres checks that each call gets its own empty database, reachable
// by the returned DSN, and that the database is dropped when the test ends.
func TestPostgres(t *testing.T) {
	if os.Getenv("DIRSYNCD_TEST_PG_DSN") == "" {
		testenv.Missing(t, "DIRSYNCD_TEST_PG_DSN is not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var names []string
	t.Run("fresh databases", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			dsn := testenv.Postgres(t)
			c, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatalf("connect to %s: %v", redact(dsn), err)
			}
			t.Cleanup(func() { _ = c.Close(context.Background()) })
			var name string
			var tables int
			if err := c.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
				t.Fatalf("current_database: %v", err)
			}
			if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables); err != nil {
				t.Fatalf("count tables: %v", err)
			}
			if !strings.HasPrefix(name, "t_") || tables != 0 {
				t.Fatalf("database %q with %d tables; want a fresh t_* database", name, tables)
			}
			if _, err := c.Exec(ctx, "CREATE TABLE probe (id int)"); err != nil {
				t.Fatalf("create table: %v", err)
			}
			names = append(names, name)
		}
		if len(names) != 2 || names[0] == names[1] {
			t.Fatalf("databases %v; want two different ones", names)
		}
	})

	admin, err := pgx.Connect(ctx, os.Getenv("DIRSYNCD_TEST_PG_DSN"))
	if err != nil {
		t.Fatalf("connect admin: %v", err)
	}
	defer admin.Close(context.Background())
	for _, name := range names {
		var n int
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
			t.Fatalf("look up %s: %v", name, err)
		}
		if n != 0 {
			t.Errorf("database %s still exists after its test ended", name)
		}
	}
}

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	return u.Redacted()
}
