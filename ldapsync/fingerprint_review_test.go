package ldapsync

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/config"
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

// failPageConn answers the search with filter from its second page on
// with an LDAP result error of code.
type failPageConn struct {
	*replayConn
	filter string
	code   uint16
}

func (c *failPageConn) Search(req *ldap.SearchRequest) (*ldap.SearchResult, error) {
	if req.Filter == c.filter {
		if p, _ := ldap.FindControl(req.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging); p != nil && len(p.Cookie) > 0 {
			return nil, ldap.NewError(c.code, errors.New("access to the rest of the container denied"))
		}
	}
	return c.replayConn.Search(req)
}

// TestTombstonesUnreadableMidReadCountsNothing: when the deleted objects
// become unreadable after a first page, the run goes on without any
// tombstone (nothing is marked gone or removed), and its counts and report
// must say so: no "gone" or "groups_gone" for writes that never happened.
func TestTombstonesUnreadableMidReadCountsNothing(t *testing.T) {
	st := openSQLite(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 23, 1, 0, 0, 0, time.UTC)
	run := func(phase string, wrap func(*replayConn) Conn) (*Result, error) {
		t.Helper()
		c := loadRecorded(t, phase)
		var conn Conn = c
		if wrap != nil {
			conn = wrap(c)
		}
		dial := func(context.Context, config.LDAPSource) (Conn, error) {
			c.mu.Lock()
			c.closed = false
			c.mu.Unlock()
			return conn, nil
		}
		s := New(adSource(), st, Options{Now: func() time.Time { return now }, Dial: dial})
		return s.Run(ctx, RunOptions{})
	}
	if _, err := run("full", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := run("incremental", nil); err != nil {
		t.Fatal(err)
	}
	js, err := st.GetUserByUserName(ctx, "jsmith")
	if err != nil {
		t.Fatal(err)
	}
	res, err := run("tombstones", func(c *replayConn) Conn {
		return &failPageConn{replayConn: c, filter: "(&(isDeleted=TRUE)(uSNChanged>=5101))", code: ldap.LDAPResultInsufficientAccessRights}
	})
	if err != nil || res.Counts["tombstones_unreadable"] != 1 {
		t.Fatalf("unreadable second page: %v, counts %v", err, res.Counts)
	}
	ls, _ := st.ListUserLinks(ctx, js.ID)
	if len(ls) != 1 || ls[0].GoneAt != nil {
		t.Fatalf("jsmith's link after an unreadable tombstone read: %+v", ls)
	}
	if p, _ := st.ListGroups(ctx, storeGroupByName("Supervisors")); len(p.Items) != 1 {
		t.Fatalf("Supervisors after an unreadable tombstone read: %+v", p.Items)
	}
	if res.Counts["gone"] != 0 || res.Counts["groups_gone"] != 0 {
		t.Fatalf("counts %v: gone/groups_gone counted for tombstones that were not applied", res.Counts)
	}
	run2, err := st.GetRun(ctx, res.RunID)
	if err != nil || run2.Counts["gone"] != 0 || run2.Counts["groups_gone"] != 0 {
		t.Fatalf("run record counts %v (%v): deletions reported that were not written", run2.Counts, err)
	}
}

// TestIncrementalGroupRebuildSkipsDeletedUsers: a user deleted in dirsyncd
// keeps its live link (its entry is still in the directory) but has no
// memberships. An incremental run that rebuilds memberships from the links
// after a group change must not try to add it back (the store refuses a
// deleted member, which failed every incremental until the next full sync,
// missing every change in between); the full sync leaves it out as well.
func TestIncrementalGroupRebuildSkipsDeletedUsers(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, testenv.SlapdOptions{}, nil)
	e.mustRun(RunOptions{Full: true})
	erin := e.user("erin")
	if err := e.st.Update(ctx, audit.Meta{Actor: "admin:test"}, func(ctx context.Context, tx store.Tx) error {
		return tx.DeleteUser(ctx, erin.ID)
	}); err != nil {
		t.Fatal(err)
	}
	e.ldap.Modify("dn: cn=solo,ou=groups," + suffix + "\nchangetype: modify\nadd: member\nmember: uid=alice,ou=people," + suffix + "\n")
	res, err := e.run(RunOptions{})
	if err != nil || res.Mode != ModeIncremental || res.Counts["groups_changed"] != 1 {
		t.Fatalf("incremental after a group change: %v (mode %s, counts %v)", err, res.Mode, res.Counts)
	}
	if got := e.groupMembers("solo"); !slices.Equal(got, []string{"alice"}) {
		t.Fatalf("solo = %v after the incremental, want [alice]", got)
	}
	e.mustRun(RunOptions{Full: true})
	if got := e.groupMembers("solo"); !slices.Equal(got, []string{"alice"}) {
		t.Fatalf("solo = %v after the full sync, want [alice]", got)
	}
}
