package ldapsync

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/internal/testenv"
	"github.com/dirsyncd/dirsyncd/store"
)

// memberReadHook calls after (once, when armed) right after a run has read
// a group's stored members, outside the run's transactions: another writer
// changing the group between the sync's read and its write.
type memberReadHook struct {
	testStore
	armed atomic.Bool
	after func()
}

func (h *memberReadHook) fire() {
	if h.armed.CompareAndSwap(true, false) {
		h.after()
	}
}

func (h *memberReadHook) ListGroupMembers(ctx context.Context, groupID, after string, limit int) ([]string, error) {
	ids, err := h.testStore.ListGroupMembers(ctx, groupID, after, limit)
	if err == nil {
		h.fire()
	}
	return ids, err
}

func (h *memberReadHook) ListSourceMemberships(ctx context.Context, source string, fn func(store.GroupMembership) error) error {
	err := h.testStore.ListSourceMemberships(ctx, source, fn)
	if err == nil {
		h.fire()
	}
	return err
}

// TestGroupFingerprintConcurrentMemberWrite: a member another writer adds
// to a group after the sync read the group's members, but before the sync
// writes its own member changes to that group, moves the group's version
// before the sync records its fingerprint. The fingerprint must not take
// that version for "the members are what the directory says": the next
// full sync has to read the group again and remove the intruder.
func TestGroupFingerprintConcurrentMemberWrite(t *testing.T) {
	ctx := context.Background()
	h := &memberReadHook{testStore: openSQLite(t)}
	e := newEnv(t, testenv.SlapdOptions{}, h)
	e.mustRun(RunOptions{Full: true})
	g, err := h.FindGroupBySourceKey(ctx, "ldap:corp", groupKey(t, e, "solo"))
	if err != nil {
		t.Fatal(err)
	}
	other := audit.Meta{Actor: "scim:entra"}
	// Removed in dirsyncd: the next sync reads solo's members and adds erin back.
	erin, alice := e.user("erin"), e.user("alice")
	if err := h.Update(ctx, other, func(ctx context.Context, tx store.Tx) error {
		return tx.RemoveMembers(ctx, g.ID, []string{erin.ID})
	}); err != nil {
		t.Fatal(err)
	}
	// Meanwhile (after that read, before the sync's write) alice is added.
	h.after = func() {
		if err := h.Update(ctx, other, func(ctx context.Context, tx store.Tx) error {
			return tx.AddMembers(ctx, g.ID, []string{alice.ID})
		}); err != nil {
			t.Error(err)
		}
	}
	h.armed.Store(true)
	res := e.mustRun(RunOptions{Full: true})
	if h.armed.Load() || res.Counts["members_added"] != 1 {
		t.Fatalf("the concurrent write did not happen or erin was not added back: counts %v", res.Counts)
	}
	if got := e.groupMembers("solo"); !slices.Equal(got, []string{"alice", "erin"}) {
		t.Fatalf("solo = %v after the concurrent write, want [alice erin]", got)
	}
	// The next full sync must see alice (added outside the directory).
	res = e.mustRun(RunOptions{Full: true})
	if got := e.groupMembers("solo"); !slices.Equal(got, []string{"erin"}) {
		t.Fatalf("solo = %v (counts %v), want [erin]: a fingerprint recorded after another writer's change hid it", got, res.Counts)
	}
}
