package ldapsync

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/internal/testenv"
	"github.com/dirsyncd/dirsyncd/store"
)

// TestDeletedGroupReturns: a group dirsyncd has soft-deleted whose entry is
// in the directory with the same stable id (an AD recycle-bin restore, or a
// full sync that once ran while it was missing) is provisioned again as a
// new group with its members; it used to fail on every run ("group is
// deleted in dirsyncd"). The deleted record keeps its history, and later
// runs keep the live group.
func TestDeletedGroupReturns(t *testing.T) {
	e := newEnv(t, testenv.SlapdOptions{Overlays: []string{"refint"}}, nil)
	e.mustRun(RunOptions{})
	want := e.groupMembers("staff")
	ctx := context.Background()
	staff := func() []string {
		p, err := e.st.ListGroups(ctx, store.GroupQuery{Filter: store.Cmp{Field: "displayName", Op: store.OpEq, Value: "staff"}, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, g := range p.Items {
			ids = append(ids, g.ID)
		}
		return ids
	}
	old := staff()
	if len(old) != 1 {
		t.Fatalf("staff groups %v", old)
	}
	if err := e.st.Update(ctx, audit.Meta{Actor: "test"}, func(ctx context.Context, tx store.Tx) error {
		return tx.DeleteGroup(ctx, old[0])
	}); err != nil {
		t.Fatal(err)
	}

	e.now = e.now.Add(time.Hour)
	res := e.mustRun(RunOptions{Full: true})
	if its := e.items(res.RunID, "failed"); len(its) != 0 {
		t.Fatalf("failed items %+v", its)
	}
	now := staff()
	if len(now) != 1 || now[0] == old[0] {
		t.Fatalf("staff after the return: %v (the deleted one was %s)", now, old[0])
	}
	if got := e.groupMembers("staff"); !slices.Equal(got, want) {
		t.Fatalf("staff members %v, want %v", got, want)
	}

	e.now = e.now.Add(time.Hour)
	res = e.mustRun(RunOptions{Full: true})
	if res.Counts["groups_created"] != 0 || res.Counts["failed"] != 0 || e.domainEvents(res.RunID) != 0 {
		t.Fatalf("next full run: counts %v, %d events", res.Counts, e.domainEvents(res.RunID))
	}
	if got := staff(); !slices.Equal(got, now) {
		t.Fatalf("staff %v, want the returned group %v", got, now)
	}
}
