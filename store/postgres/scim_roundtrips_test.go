package postgres

import (
	"context"
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
