package ldapsync

import (
	"context"
	"testing"

	"github.com/dirsyncd/dirsyncd/internal/testenv"
	"github.com/dirsyncd/dirsyncd/store/postgres"
)

func openPostgres(t *testing.T) testStore {
	t.Helper()
	ctx := context.Background()
	st, err := postgres.Open(ctx, testenv.Postgres(t), postgres.Options{})
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return st
}

func TestFullSyncOpenLDAPPostgres(t *testing.T) {
	testFullSync(t, openPostgres(t))
}
