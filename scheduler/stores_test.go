package scheduler

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/dirsyncd/dirsyncd/internal/testenv"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/store/postgres"
	"github.com/dirsyncd/dirsyncd/store/sqlite"
)

// forEachBackend runs fn against SQLite and PostgreSQL (testenv.Postgres:
// fails under CI when the cluster is missing). open returns a new handle on
// the same fresh, migrated database (a second replica); every handle reads
// the test's clock.
func forEachBackend(t *testing.T, fn func(t *testing.T, open func() store.Store, clk *clock)) {
	backends := []struct {
		name string
		open func(t *testing.T, clk *clock) func() store.Store
	}{
		{"sqlite", func(t *testing.T, clk *clock) func() store.Store {
			path := filepath.Join(t.TempDir(), "s.db")
			return func() store.Store {
				st, err := sqlite.Open(context.Background(), path, sqlite.Options{Now: clk.Now})
				if err != nil {
					t.Fatal(err)
				}
				return st
			}
		}},
		{"postgres", func(t *testing.T, clk *clock) func() store.Store {
			dsn := testenv.Postgres(t)
			return func() store.Store {
				st, err := postgres.Open(context.Background(), dsn, postgres.Options{Now: clk.Now, MaxConns: 4})
				if err != nil {
					t.Fatal(err)
				}
				return st
			}
		}},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			clk := newClock()
			raw := b.open(t, clk)
			open := func() store.Store {
				st := raw()
				t.Cleanup(func() { st.Close() })
				if err := st.Migrate(context.Background()); err != nil {
					t.Fatal(err)
				}
				return st
			}
			fn(t, open, clk)
		})
	}
}

// forEachStore runs fn with one store per backend.
func forEachStore(t *testing.T, fn func(t *testing.T, st store.Store, clk *clock)) {
	forEachBackend(t, func(t *testing.T, open func() store.Store, clk *clock) { fn(t, open(), clk) })
}
