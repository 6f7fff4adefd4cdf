package postgres

import (
	"context"
	"errors"
	"testing"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// scimUserWriter is the store's SCIM PUT path (store/sqlstore/scim_users.go).
type scimUserWriter interface {
	SCIMLockUserExtras(ctx context.Context, id string) (directory.User, []directory.Grant, []directory.Group, error)
	SCIMUpdateUser(ctx context.Context, u *directory.User, cur directory.User, expectVersion int64) error
}

// TestSCIMPutRoundTrips: a SCIM PUT that changes only the user row is two
// round trips on PostgreSQL: BEGIN with the locked read, then the UPDATE,
// the audit event (locking the chain head) and COMMIT in one statement and
// pipeline (execWithFlush, flushChainInSQL; it was three, and four before
// the head lock rode with the UPDATE). A statement issued after the kept
// UPDATE in the same transaction sees it (the UPDATE is sent first), and a
// PUT that fails its uniqueness rule changes nothing.
func TestSCIMPutRoundTrips(t *testing.T) {
	s, rt := tracedStore(t)
	ctx := context.Background()
	m := audit.Meta{Actor: "scim:entra"}
	var ids []string
	err := s.Update(ctx, m, func(ctx context.Context, tx store.Tx) error {
		for _, n := range []string{"rt1@example.org", "rt2@example.org"} {
			u := &directory.User{UserName: n, Active: true, Emails: []directory.Email{{Value: n, Type: "work", Primary: true}}}
			if err := tx.CreateUser(ctx, u); err != nil {
				return err
			}
			ids = append(ids, u.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	put := func(name string, after func(ctx context.Context, tx store.Tx) error) error {
		return s.Update(ctx, m, func(ctx context.Context, tx store.Tx) error {
			w := tx.(scimUserWriter)
			cur, _, _, err := w.SCIMLockUserExtras(ctx, ids[0])
			if err != nil {
				return err
			}
			u := cur
			u.DisplayName = name
			if err := w.SCIMUpdateUser(ctx, &u, cur, cur.Version); err != nil {
				return err
			}
			if after != nil {
				return after(ctx, tx)
			}
			return nil
		})
	}
	if err := put("warm-up", nil); err != nil { // prepares the statements
		t.Fatal(err)
	}
	rt.reset()
	if err := put("Two trips", nil); err != nil {
		t.Fatal(err)
	}
	if n := rt.count(); n != 2 {
		t.Fatalf("SCIM PUT: %d round trips, want 2 (queries %q, batches %q)", n, rt.queries, rt.batches)
	}
	// A read after the kept UPDATE, in the same transaction, sees it.
	err = put("Read back", func(ctx context.Context, tx store.Tx) error {
		u, err := tx.GetUser(ctx, ids[0])
		if err == nil && u.DisplayName != "Read back" {
			t.Errorf("read in the transaction after the update: displayName %q", u.DisplayName)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// A userName taken by the other user: the PUT fails, nothing changes.
	before, err := s.GetUser(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(ctx, m, func(ctx context.Context, tx store.Tx) error {
		w := tx.(scimUserWriter)
		cur, _, _, err := w.SCIMLockUserExtras(ctx, ids[0])
		if err != nil {
			return err
		}
		u := cur
		u.UserName = "RT2@example.org"
		return w.SCIMUpdateUser(ctx, &u, cur, cur.Version)
	})
	if err == nil {
		t.Fatal("PUT to a taken userName succeeded")
	}
	if after, _ := s.GetUser(ctx, ids[0]); after.Version != before.Version || after.UserName != before.UserName {
		t.Fatalf("failed PUT changed the user: %+v", after)
	}
	v, err := s.VerifyAudit(ctx)
	if err != nil || !v.OK() || v.Checked != 5 {
		t.Fatalf("VerifyAudit = %+v, %v; want 5 events", v, err)
	}
}

// scimMemberWriter is the store's one-statement member PATCH path.
type scimMemberWriter interface {
	SCIMLockGroupChangeMembers(ctx context.Context, groupID string, add bool, userIDs []string, visible func(directory.Group) bool) (directory.Group, []string, error)
}

// TestSCIMMemberPatchRoundTrips: a member PATCH that only adds or only
// removes members is two round trips on PostgreSQL (BEGIN with the group
// lock and the member write in one statement; the audit events and COMMIT),
// where SCIMLockGroup then SCIMAddMembers took three. It adds only live
// users, reports the missing ones, writes nothing to a missing group, and
// records nothing for a group the caller does not see.
func TestSCIMMemberPatchRoundTrips(t *testing.T) {
	s, rt := tracedStore(t)
	ctx := context.Background()
	m := audit.Meta{Actor: "scim:entra"}
	u := &directory.User{UserName: "member@example.org", Active: true}
	g := &directory.Group{Source: "scim:entra", DisplayName: "Members"}
	err := s.Update(ctx, m, func(ctx context.Context, tx store.Tx) error {
		if err := tx.CreateUser(ctx, u); err != nil {
			return err
		}
		return tx.CreateGroup(ctx, g)
	})
	if err != nil {
		t.Fatal(err)
	}
	all := func(directory.Group) bool { return true }
	change := func(add bool, ids []string, visible func(directory.Group) bool) (directory.Group, []string, error) {
		var grp directory.Group
		var missing []string
		err := s.Update(ctx, m, func(ctx context.Context, tx store.Tx) error {
			var err error
			grp, missing, err = tx.(scimMemberWriter).SCIMLockGroupChangeMembers(ctx, g.ID, add, ids, visible)
			return err
		})
		return grp, missing, err
	}
	// warm up (prepares the statements), then measure an addition and a removal
	if _, _, err := change(true, []string{u.ID}, all); err != nil {
		t.Fatal(err)
	}
	if _, _, err := change(false, []string{u.ID}, all); err != nil {
		t.Fatal(err)
	}
	for _, add := range []bool{true, false} {
		rt.reset()
		grp, missing, err := change(add, []string{u.ID}, all)
		if err != nil || len(missing) > 0 || grp.ID != g.ID || grp.DisplayName != "Members" {
			t.Fatalf("add=%v: group %+v missing %v err %v", add, grp, missing, err)
		}
		if n := rt.count(); n != 2 {
			t.Fatalf("add=%v: %d round trips, want 2 (queries %q, batches %q)", add, n, rt.queries, rt.batches)
		}
		ids, err := s.ListGroupMembers(ctx, g.ID, "", 10)
		if err != nil || (add && len(ids) != 1) || (!add && len(ids) != 0) {
			t.Fatalf("add=%v: members %v %v", add, ids, err)
		}
	}
	if _, missing, err := change(true, []string{u.ID, "no-such-user"}, all); err != nil || len(missing) != 1 || missing[0] != "no-such-user" {
		t.Fatalf("missing user: missing %v err %v", missing, err)
	}
	v0, _ := s.VerifyAudit(ctx)
	// A group the caller does not see: nothing recorded (the caller fails
	// the transaction, undoing the write).
	err = s.Update(ctx, m, func(ctx context.Context, tx store.Tx) error {
		_, _, err := tx.(scimMemberWriter).SCIMLockGroupChangeMembers(ctx, g.ID, true, []string{u.ID}, func(directory.Group) bool { return false })
		if err != nil {
			return err
		}
		return store.ErrNotFound
	})
	if err == nil {
		t.Fatal("invisible group: the transaction did not fail")
	}
	if ids, _ := s.ListGroupMembers(ctx, g.ID, "", 10); len(ids) != 1 { // the missing-user attempt kept the live one
		t.Fatalf("members after the invisible attempt: %v", ids)
	}
	err = s.Update(ctx, m, func(ctx context.Context, tx store.Tx) error {
		_, _, err := tx.(scimMemberWriter).SCIMLockGroupChangeMembers(ctx, "no-such-group", true, []string{u.ID}, all)
		return err
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing group: %v, want ErrNotFound", err)
	}
	v, err := s.VerifyAudit(ctx)
	if err != nil || !v.OK() || v.Checked != v0.Checked {
		t.Fatalf("VerifyAudit = %+v, %v (was %d events)", v, err, v0.Checked)
	}
}
