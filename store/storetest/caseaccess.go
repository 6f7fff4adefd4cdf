package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/caseaccess"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// CaseAccessStore is a backend with the case-access tables (migration
// 0050+); store/sqlstore implements it.
type CaseAccessStore interface {
	CaseAccess() caseaccess.Store
}

// RunCaseAccess runs the conformance suite of the case-access store
// (caseaccess.Store): what the caseaccess package relies on beyond its own
// service tests. newStore returns a fresh, empty store implementing
// CaseAccessStore (RunCaseAccess migrates).
func RunCaseAccess(t *testing.T, newStore func(t *testing.T) store.Store) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, c *caseEnv)
	}{
		{"AccessRecords", testCaseAccessRecords},
		{"Grantors", testCaseGrantors},
		{"Expiry", testCaseExpiry},
		{"OneLiveInvite", testCaseOneLiveInvite},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			if err := s.Migrate(context.Background()); err != nil {
				t.Fatalf("migrate: %v", err)
			}
			cs, ok := s.(CaseAccessStore)
			if !ok {
				t.Fatalf("%T has no case-access tables", s)
			}
			c := &caseEnv{s: s, cs: cs.CaseAccess(), ctx: context.Background(), users: map[string]string{}}
			c.seed(t)
			tc.fn(t, c)
		})
	}
}

type caseEnv struct {
	s     store.Store
	cs    caseaccess.Store
	ctx   context.Context
	users map[string]string // userName -> id
}

var caseT0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// seed: users a..e (d inactive) and case C1.
func (c *caseEnv) seed(t *testing.T) {
	err := c.s.Update(c.ctx, meta, func(ctx context.Context, tx store.Tx) error {
		for _, n := range []string{"a", "b", "c", "d", "e"} {
			u := directory.User{UserName: n, Email: n + "@example.org", DisplayName: "User " + n, Active: n != "d", UsualRole: "NOMS", Location: "Leeds"}
			if err := tx.CreateUser(ctx, &u); err != nil {
				return err
			}
			c.users[n] = u.ID
		}
		return nil
	})
	if err != nil {
		t.Fatalf("seed users: %v", err)
	}
	c.update(t, func(ctx context.Context, tx caseaccess.Tx) error {
		return tx.CreateCase(ctx, &caseaccess.Case{Ref: "C1", Title: "R v X", Defendants: []string{"X", "Y"}, CreatedBy: meta.Actor, CreatedAt: caseT0})
	})
}

func (c *caseEnv) update(t *testing.T, fn func(ctx context.Context, tx caseaccess.Tx) error) {
	t.Helper()
	if err := c.cs.UpdateCases(c.ctx, meta, fn); err != nil {
		t.Fatalf("update cases: %v", err)
	}
}

func (c *caseEnv) invite(t *testing.T, id, user string, role caseaccess.Role, exp *time.Time) caseaccess.Invite {
	t.Helper()
	inv := caseaccess.Invite{ID: id, CaseRef: "C1", UserID: c.users[user], Role: role, ExpiresAt: exp, CreatedAt: caseT0}
	c.update(t, func(ctx context.Context, tx caseaccess.Tx) error { return tx.CreateInvite(ctx, &inv) })
	return inv
}

func (c *caseEnv) count(t *testing.T, action string) int {
	t.Helper()
	n := 0
	if err := c.s.Audit(c.ctx, store.AuditFilter{Action: action}, func(e audit.Event) error {
		if e.Actor != meta.Actor {
			t.Errorf("%s audited by %q, want %q", action, e.Actor, meta.Actor)
		}
		n++
		return nil
	}); err != nil {
		t.Fatalf("audit: %v", err)
	}
	return n
}

func testCaseAccessRecords(t *testing.T, c *caseEnv) {
	inv := c.invite(t, "i1", "a", caseaccess.RoleFeePaidJudge, nil)
	f, err := c.cs.AccessFacts(c.ctx, "C1", c.users["a"])
	if err != nil || !f.CaseFound || f.User.UserName != "a" || f.User.UsualRole != "NOMS" || f.Invite == nil || f.Invite.ID != inv.ID ||
		f.Access != nil || f.GroupGrants != 0 || f.DomainGrants != 0 || !reflect.DeepEqual(f.Case.Defendants, []string{"X", "Y"}) {
		t.Fatalf("facts = %+v, %v", f, err)
	}
	if f, err := c.cs.AccessFacts(c.ctx, "NOPE", c.users["a"]); err != nil || f.CaseFound || f.User.ID != c.users["a"] {
		t.Fatalf("facts on an unknown case = %+v, %v; want the user and CaseFound false", f, err)
	}
	if _, err := c.cs.AccessFacts(c.ctx, "C1", "ghost"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("facts of an unknown user: %v, want ErrNotFound", err)
	}

	g := caseaccess.UsedGrant{Kind: caseaccess.ViaGroup, ID: "g1", Detail: "NOMS", AllDefendants: true, FirstAt: caseT0}
	a := caseaccess.Access{CaseRef: "C1", UserID: c.users["b"], FirstAt: caseT0, ViaKind: caseaccess.ViaGroup, ViaID: "g1", ViaDetail: "NOMS",
		Defendants: []string{"X", "Y"}, AllDefendants: true, Grants: []caseaccess.UsedGrant{g}}
	var first, again bool
	c.update(t, func(ctx context.Context, tx caseaccess.Tx) error {
		var err error
		first, err = tx.InsertAccess(ctx, &a)
		return err
	})
	dup := a
	dup.ViaID = "other"
	c.update(t, func(ctx context.Context, tx caseaccess.Tx) error {
		var err error
		again, err = tx.InsertAccess(ctx, &dup)
		return err
	})
	if !first || again || c.count(t, "case.access.first") != 1 {
		t.Fatalf("InsertAccess: first %v, again %v, %d events; want true, false, 1", first, again, c.count(t, "case.access.first"))
	}
	got, err := c.cs.GetAccess(c.ctx, "C1", c.users["b"])
	if err != nil || got.ViaID != "g1" || !got.FirstAt.Equal(caseT0) || !got.AllDefendants || len(got.Grants) != 1 ||
		got.Grants[0].ID != "g1" || !got.Grants[0].FirstAt.Equal(caseT0) || got.RetainedAt != nil {
		t.Fatalf("stored record = %+v, %v", got, err)
	}

	at := caseT0.Add(time.Hour)
	next := got
	next.RetainedAt = &at
	next.Grants = []caseaccess.UsedGrant{g}
	next.Grants[0].RetainedAt = &at
	c.update(t, func(ctx context.Context, tx caseaccess.Tx) error {
		return tx.UpdateAccess(ctx, "case.access.retain", &got, &next)
	})
	got, err = c.cs.GetAccess(c.ctx, "C1", c.users["b"])
	if err != nil || got.RetainedAt == nil || !got.RetainedAt.Equal(at) || got.Grants[0].RetainedAt == nil || !got.Grants[0].RetainedAt.Equal(at) {
		t.Fatalf("updated record = %+v, %v", got, err)
	}
	if n := c.count(t, "case.access.retain"); n != 1 {
		t.Errorf("case.access.retain events = %d, want 1", n)
	}
	missing := caseaccess.Access{CaseRef: "C1", UserID: c.users["c"], FirstAt: caseT0, ViaKind: caseaccess.ViaInvite, ViaID: "x"}
	err = c.cs.UpdateCases(c.ctx, meta, func(ctx context.Context, tx caseaccess.Tx) error {
		return tx.UpdateAccess(ctx, "case.access.via", &missing, &missing)
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateAccess of a missing record: %v, want ErrNotFound", err)
	}

	c.update(t, func(ctx context.Context, tx caseaccess.Tx) error {
		if err := tx.AddGroupGrant(ctx, &caseaccess.GroupGrant{ID: "g2", CaseRef: "C1", UsualRole: "NOMS", CreatedAt: caseT0}); err != nil {
			return err
		}
		return tx.AddDomainGrant(ctx, &caseaccess.DomainGrant{ID: "d1", CaseRef: "C1", Domain: "example.org", Defendants: []string{"X"}, CreatedAt: caseT0})
	})
	f, err = c.cs.AccessFacts(c.ctx, "C1", c.users["b"])
	if err != nil || f.Invite != nil || f.Access == nil || f.Access.RetainedAt == nil || len(f.Access.Grants) != 1 || f.GroupGrants != 1 || f.DomainGrants != 1 {
		t.Fatalf("facts with a record and grants = %+v, %v", f, err)
	}
	if as, err := c.cs.ListAccess(c.ctx, "C1"); err != nil || len(as) != 1 || as[0].UserID != c.users["b"] {
		t.Fatalf("ListAccess = %+v, %v", as, err)
	}
}

func testCaseGrantors(t *testing.T, c *caseEnv) {
	exp := caseT0.Add(time.Hour)
	c.invite(t, "i-a", "a", caseaccess.RoleProsecutor, nil)
	c.invite(t, "i-b", "b", caseaccess.RoleOutsideProsecutingAdvocate, &exp)
	c.invite(t, "i-c", "c", caseaccess.RoleFeePaidJudge, nil)
	c.invite(t, "i-d", "d", caseaccess.RoleProsecutor, nil) // inactive user
	c.invite(t, "i-e", "e", caseaccess.RoleProsecutor, nil)
	c.update(t, func(ctx context.Context, tx caseaccess.Tx) error {
		_, err := tx.RevokeInvite(ctx, "i-e", caseT0, caseaccess.ReasonRevoked)
		return err
	})
	roles := []caseaccess.Role{caseaccess.RoleProsecutor, caseaccess.RoleOutsideProsecutingAdvocate}
	names := func(now time.Time) []string {
		gs, err := c.cs.ListGrantors(c.ctx, "C1", roles, now)
		if err != nil {
			t.Fatalf("ListGrantors: %v", err)
		}
		var out []string
		for _, g := range gs {
			out = append(out, g.UserName+"/"+string(g.Role)+"/"+g.Email)
			if g.UserID != c.users[g.UserName] || g.DisplayName != "User "+g.UserName {
				t.Errorf("grantor = %+v", g)
			}
		}
		return out
	}
	if got := names(caseT0); !reflect.DeepEqual(got, []string{"a/prosecutor/a@example.org", "b/outside-prosecuting-advocate/b@example.org"}) {
		t.Errorf("grantors = %v", got)
	}
	if got := names(exp); !reflect.DeepEqual(got, []string{"a/prosecutor/a@example.org"}) {
		t.Errorf("grantors at b's expiry = %v", got)
	}
}

func testCaseExpiry(t *testing.T, c *caseEnv) {
	e1, e2, e3 := caseT0.Add(time.Minute), caseT0.Add(2*time.Minute), caseT0.Add(3*time.Minute)
	c.invite(t, "i2", "b", caseaccess.RoleFeePaidJudge, &e2)
	c.invite(t, "i1", "a", caseaccess.RoleFeePaidJudge, &e1)
	c.invite(t, "i3", "c", caseaccess.RoleFeePaidJudge, &e3)
	c.invite(t, "i0", "e", caseaccess.RoleFeePaidJudge, nil)
	next := func(want time.Time) {
		t.Helper()
		got, ok, err := c.cs.NextExpiry(c.ctx)
		if err != nil || !ok || !got.Equal(want) {
			t.Fatalf("NextExpiry = %v %v %v, want %v", got, ok, err, want)
		}
	}
	next(e1)
	expire := func(now time.Time, limit int) []string {
		var ids []string
		c.update(t, func(ctx context.Context, tx caseaccess.Tx) error {
			due, err := tx.ExpireDue(ctx, now, limit)
			for _, inv := range due {
				if inv.RevokedAt == nil || !inv.RevokedAt.Equal(now) || inv.RevokeReason != caseaccess.ReasonExpired {
					t.Errorf("expired invite = %+v", inv)
				}
				ids = append(ids, inv.ID)
			}
			return err
		})
		return ids
	}
	if got := expire(e2, 1); !reflect.DeepEqual(got, []string{"i1"}) {
		t.Fatalf("ExpireDue(e2, 1) = %v, want the earliest", got)
	}
	if got := expire(e2, 10); !reflect.DeepEqual(got, []string{"i2"}) {
		t.Fatalf("ExpireDue(e2, 10) = %v", got)
	}
	next(e3)
	if got := expire(e2, 10); got != nil {
		t.Fatalf("ExpireDue again = %v, want nothing", got)
	}
	if n := c.count(t, "case.invite.expire"); n != 2 {
		t.Errorf("case.invite.expire events = %d, want 2", n)
	}
	if _, err := c.cs.LiveInvite(c.ctx, "C1", c.users["a"]); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an expired invite is still live: %v", err)
	}
	c.update(t, func(ctx context.Context, tx caseaccess.Tx) error {
		_, err := tx.RevokeInvite(ctx, "i3", e1, caseaccess.ReasonRevoked)
		return err
	})
	if _, ok, err := c.cs.NextExpiry(c.ctx); err != nil || ok {
		t.Errorf("NextExpiry with no expiring invite left: %v %v", ok, err)
	}
}

func testCaseOneLiveInvite(t *testing.T, c *caseEnv) {
	c.invite(t, "i1", "a", caseaccess.RoleFeePaidJudge, nil)
	err := c.cs.UpdateCases(c.ctx, meta, func(ctx context.Context, tx caseaccess.Tx) error {
		return tx.CreateInvite(ctx, &caseaccess.Invite{ID: "i2", CaseRef: "C1", UserID: c.users["a"], Role: caseaccess.RoleProsecutor, CreatedAt: caseT0})
	})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a second live invite: %v, want ErrConflict", err)
	}
	c.update(t, func(ctx context.Context, tx caseaccess.Tx) error {
		_, err := tx.RevokeInvite(ctx, "i1", caseT0, caseaccess.ReasonRevoked)
		return err
	})
	c.invite(t, "i2", "a", caseaccess.RoleProsecutor, nil) // allowed once the first ended
	if n := c.count(t, "case.invite.create"); n != 2 {
		t.Errorf("case.invite.create events = %d, want 2", n)
	}
}
