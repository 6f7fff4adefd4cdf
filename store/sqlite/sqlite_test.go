package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/dirsyncd/dirsyncd/store"
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
