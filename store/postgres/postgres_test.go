package postgres

import (
	"context"
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
