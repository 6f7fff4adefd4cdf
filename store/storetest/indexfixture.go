package storetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// SeedIndexFixture writes the data the backends' query-plan tests
// (TestLookupsUseIndexes) inspect: 3,000 users and 30 groups of 100
// members each, in one audited transaction.
func SeedIndexFixture(t testing.TB, s store.Store) {
	t.Helper()
	seed := BenchUsers("idx", 3000)
	if err := s.Update(context.Background(), audit.Meta{Actor: "t"}, func(ctx context.Context, tx store.Tx) error {
		if _, _, err := tx.UpsertUsers(ctx, seed); err != nil {
			return err
		}
		for i := 0; i < 30; i++ {
			g := directory.Group{Source: "s", DisplayName: fmt.Sprint("g", i)}
			if err := tx.CreateGroup(ctx, &g); err != nil {
				return err
			}
			var ids []string
			for _, u := range seed[i*100 : i*100+100] {
				ids = append(ids, u.ID)
			}
			if err := tx.AddMembers(ctx, g.ID, ids); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("seed index fixture: %v", err)
	}
}
