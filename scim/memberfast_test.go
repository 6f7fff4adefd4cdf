package scim

import (
	"context"
	"fmt"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/store/sqlstore"
)

// TestGroupMemberFastPathMatches: the store's member PATCH path
// (SCIMLockGroup, SCIMAddMembers, SCIMRemoveMembers: one statement per
// change) and the generic one (GetGroup, member check, AddMembers,
// RemoveMembers) answer alike, leave the same members and write the same
// audit events, step by step on twin groups; an add naming a user that
// does not exist is 400 invalidValue naming it and changes nothing, also
// not the live members named beside it.
func TestGroupMemberFastPathMatches(t *testing.T) { bothStores(t, testGroupMemberFastPathMatches) }

func testGroupMemberFastPathMatches(t *testing.T, e *env) {
	var u []string
	for i := 0; i < 5; i++ {
		u = append(u, e.createUser(fmt.Sprintf("mf%d@example.org", i), nil))
	}
	e.must(e.do("DELETE", "/Users/"+u[4], nil), 204) // a deleted user is no member either
	plain, err := New(plainBackend{e.st}, testVerifier(t), Options{BaseURL: "https://dirsyncd.test/scim/v2", Now: func() time.Time { return e.now }})
	if err != nil {
		t.Fatal(err)
	}
	slow := httptest.NewServer(stripped(plain))
	t.Cleanup(slow.Close)
	fast := e.srv
	groups := map[*httptest.Server]string{fast: e.createGroup("MF fast", u[0]), slow: e.createGroup("MF slow", u[0])}

	add := func(ids ...string) map[string]any {
		var vals []any
		for _, id := range ids {
			vals = append(vals, map[string]any{"value": id})
		}
		return patchBody(map[string]any{"op": "add", "path": "members", "value": vals})
	}
	remove := func(id string) map[string]any {
		return patchBody(map[string]any{"op": "remove", "path": `members[value eq "` + id + `"]`})
	}
	steps := []struct {
		name   string
		body   map[string]any
		status int
	}{
		{"add one", add(u[1]), 204},
		{"add a member again", add(u[1]), 204},
		{"add two, one a member", add(u[2], u[0], u[3]), 204},
		{"add a live user and one that does not exist", add(u[0], "no-such-user", u[3]), 400},
		{"add a deleted user beside a new one", add(u[4], u[3]), 400},
		{"remove one", remove(u[1]), 204},
		{"remove one that is no member", remove(u[1]), 204},
		{"remove with a value array", patchBody(map[string]any{"op": "remove", "path": "members", "value": []any{map[string]any{"value": u[2]}, map[string]any{"value": u[0]}}}), 204},
		{"add in two operations", patchBody(map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": u[1]}}},
			map[string]any{"op": "Add", "path": "members", "value": []any{map[string]any{"value": u[2]}}}), 204},
		{"add then a bad one: nothing stays", patchBody(map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": u[0]}}},
			map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": "nobody"}}}), 400},
	}
	for _, st := range steps {
		var raws []string
		for _, srv := range []*httptest.Server{fast, slow} {
			e.srv = srv
			r := e.do("PATCH", "/Groups/"+groups[srv], st.body)
			if r.Status != st.status {
				t.Fatalf("%s: status %d, want %d: %s", st.name, r.Status, st.status, r.Raw)
			}
			raws = append(raws, strings.ReplaceAll(string(r.Raw), groups[srv], "GROUP"))
		}
		if raws[0] != raws[1] {
			t.Errorf("%s: fast answers %s, generic %s", st.name, raws[0], raws[1])
		}
		if st.status == 400 && !strings.Contains(raws[0], `"scimType":"invalidValue"`) {
			t.Errorf("%s: %s, want invalidValue", st.name, raws[0])
		}
		a, b := membersAndEvents(t, e.st, groups[fast]), membersAndEvents(t, e.st, groups[slow])
		if a != b {
			t.Errorf("%s: fast path leaves\n %s\nthe generic one\n %s", st.name, a, b)
		}
	}
	e.srv = fast
	if got := membersAndEvents(t, e.st, groups[fast]); !strings.HasPrefix(got, fmt.Sprintf("members %v;", sortedIDs(u[1], u[2], u[3]))) {
		t.Errorf("members at the end: %s, want %v", got, sortedIDs(u[1], u[2], u[3]))
	}
}

func sortedIDs(ids ...string) []string {
	out := append([]string(nil), ids...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// membersAndEvents describes a group's members, its audit events (action
// and member) after its creation, and its version.
func membersAndEvents(t *testing.T, st store.Store, groupID string) string {
	t.Helper()
	ids, err := st.ListGroupMembers(context.Background(), groupID, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	var evs []string
	if err := st.Audit(context.Background(), store.AuditFilter{ObjectID: groupID}, func(ev audit.Event) error {
		if ev.Action != "group.create" {
			evs = append(evs, ev.Action+" "+string(ev.Before)+string(ev.After)+" by "+ev.Actor)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	g, err := st.GetGroup(context.Background(), groupID)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("members %v; events %v; version %d", ids, evs, g.Version)
}

// TestMemberAddBesideUserUpdate (PostgreSQL, where writers run in
// parallel): adding a user to a group does not wait for a PUT or PATCH of
// that user that holds the user's row: the SCIM update locks it FOR NO KEY
// UPDATE, which the member row's foreign-key check (KEY SHARE) does not
// conflict with. (With FOR UPDATE the add waited, and when it held the
// audit chain head meanwhile, the two deadlocked.)
func TestMemberAddBesideUserUpdate(t *testing.T) {
	e := newEnvOn(t, kindPostgres)
	uid := e.createUser("beside@example.org", nil)
	gid := e.createGroup("Beside")
	ctx := context.Background()
	err := e.st.Update(ctx, audit.Meta{Actor: "scim:test"}, func(ctx context.Context, tx store.Tx) error {
		if _, err := tx.(userLocker).SCIMLockUser(ctx, uid); err != nil {
			return err
		}
		// Another transaction adds the locked user to a group meanwhile.
		actx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		return e.st.Update(actx, audit.Meta{Actor: "scim:other"}, func(ctx context.Context, tx store.Tx) error {
			return lockGroupAddMember(ctx, tx, gid, uid)
		})
	})
	if err != nil {
		t.Fatalf("member add beside a locked user: %v", err)
	}
	if ids, err := e.st.ListGroupMembers(ctx, gid, "", 10); err != nil || len(ids) != 1 || ids[0] != uid {
		t.Fatalf("members %v %v, want %s", ids, err, uid)
	}
}

// TestMemberAddBesideLockedUserWrite (PostgreSQL): a member addition that
// has to wait for the user's row (another writer holds it FOR UPDATE and
// flushes its audit event at commit) does not hold the audit chain head
// meanwhile, so both commit; taking the head in the addition's statement
// deadlocked them (PostgreSQL aborted one).
func TestMemberAddBesideLockedUserWrite(t *testing.T) {
	e := newEnvOn(t, kindPostgres)
	uid := e.createUser("locked@example.org", nil)
	gid := e.createGroup("Locked")
	raw := e.st.(interface{ DB() sqlstore.DB }).DB()
	ctx := context.Background()
	added := make(chan error, 1)
	err := e.st.Update(ctx, audit.Meta{Actor: "ldap:test"}, func(ctx context.Context, tx store.Tx) error {
		u, err := tx.GetUser(ctx, uid)
		if err != nil {
			return err
		}
		u.DisplayName = "Changed"
		if err := tx.UpdateUser(ctx, &u, 0); err != nil { // locks the row FOR UPDATE
			return err
		}
		go func() {
			actx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			added <- e.st.Update(actx, audit.Meta{Actor: "scim:other"}, func(ctx context.Context, tx store.Tx) error {
				gm := tx.(groupMemberWriter)
				if _, err := gm.SCIMLockGroup(ctx, gid); err != nil {
					return err
				}
				_, err := gm.SCIMAddMembers(ctx, gid, []string{uid})
				return err
			})
		}()
		for { // until the addition waits for the user's row
			var n int
			if err := raw.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil // commit: the flush takes the chain head
			}
			select {
			case err := <-added:
				return fmt.Errorf("the addition did not wait for the locked user (err %v): nothing tested", err)
			default:
				runtime.Gosched()
			}
		}
	})
	if err != nil {
		t.Fatalf("writer holding the user: %v", err)
	}
	if err := <-added; err != nil {
		t.Fatalf("member addition: %v", err)
	}
	if ids, err := e.st.ListGroupMembers(ctx, gid, "", 10); err != nil || len(ids) != 1 || ids[0] != uid {
		t.Fatalf("members %v %v, want %s", ids, err, uid)
	}
}

// lockGroupAddMember is the store side of a member PATCH adding uid to gid:
// the group locked, the member added; a user the store did not find is an
// error.
func lockGroupAddMember(ctx context.Context, tx store.Tx, gid, uid string) error {
	gm := tx.(groupMemberWriter)
	if _, err := gm.SCIMLockGroup(ctx, gid); err != nil {
		return err
	}
	missing, err := gm.SCIMAddMembers(ctx, gid, []string{uid})
	if err == nil && len(missing) > 0 {
		err = fmt.Errorf("missing %v", missing)
	}
	return err
}
