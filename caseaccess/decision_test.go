package caseaccess_test

import (
	"context"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/caseaccess"
	"github.com/dirsyncd/dirsyncd/store"
)

func TestDecisionThroughEachGrant(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		inv := e.invite(caseaccess.InviteInput{User: "dan", Role: caseaccess.RoleDefenceAdvocate, Defendants: []string{"Jones"}})
		g, err := e.svc.AddGroupGrant(e.ctx, admin, "T20260001", caseaccess.GroupInput{UsualRole: "noms", Location: "SOUTHWARK"})
		if err != nil {
			t.Fatal(err)
		}
		dg, err := e.svc.AddDomainGrant(e.ctx, admin, "T20260001", caseaccess.DomainInput{Domain: "johnson.co.uk.cjsm.net", Defendants: []string{"Smith"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			user       string
			allowed    bool
			kind       caseaccess.ViaKind
			id         string
			defendants []string
		}{
			{"dan", true, caseaccess.ViaInvite, inv.ID, []string{"Jones"}},                        // invite beats the domain grant
			{"nora", true, caseaccess.ViaGroup, g.ID, []string{"Jones", "Smith"}},                 // NOMS at Southwark
			{"nick", false, "", "", nil},                                                          // NOMS at Leeds: location restricts
			{"dora@johnson.co.uk.cjsm.net", true, caseaccess.ViaDomain, dg.ID, []string{"Smith"}}, // by domain, tied to Smith
			{"barb", false, "", "", nil},
			{"ivy", false, "", "", nil},
		} {
			t.Run(tc.user, func(t *testing.T) {
				d := e.decide(tc.user)
				if d.Allowed != tc.allowed {
					t.Fatalf("allowed = %v, want %v (%+v)", d.Allowed, tc.allowed, d)
				}
				if !tc.allowed {
					if d.Via != nil || len(d.Grantors) != 1 || d.Grantors[0].UserName != "pat" || d.Grantors[0].Role != caseaccess.RoleProsecutor {
						t.Fatalf("denied decision should list pat as grantor: %+v", d)
					}
					if !reflect.DeepEqual(d.Roles, []string{"noms at SOUTHWARK"}) {
						t.Errorf("roles with access = %v", d.Roles)
					}
					return
				}
				if d.Via == nil || d.Via.Kind != tc.kind || d.Via.ID != tc.id {
					t.Fatalf("via = %+v, want %s %s", d.Via, tc.kind, tc.id)
				}
				if !reflect.DeepEqual(d.Defendants, tc.defendants) {
					t.Errorf("defendants = %v, want %v", d.Defendants, tc.defendants)
				}
				if !d.FirstAccess {
					t.Errorf("first decision did not record the first access")
				}
			})
		}
	})
}

// TestFirstAccessRecordedOnce: the first allowed decision writes the access
// record and its audit event; later ones write nothing.
func TestFirstAccessRecordedOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		e.invite(caseaccess.InviteInput{User: "nora", Role: caseaccess.RoleFeePaidJudge})
		if d := e.decide("nick"); d.Allowed {
			t.Fatalf("nick allowed: %+v", d)
		}
		if n := e.auditCount("case.access.first"); n != 0 {
			t.Fatalf("a denied decision recorded access (%d events)", n)
		}
		d1 := e.decide("nora")
		e.clk.Set(t0.Add(time.Hour))
		before := e.auditCount("")
		d2 := e.decide(e.id("nora"))
		if !d1.FirstAccess || d2.FirstAccess {
			t.Fatalf("first access flags: %v then %v", d1.FirstAccess, d2.FirstAccess)
		}
		if !d2.FirstAccessAt.Equal(t0) {
			t.Errorf("first access at %v, want %v", d2.FirstAccessAt, t0)
		}
		if got := e.auditCount(""); got != before {
			t.Errorf("a repeated decision wrote %d audit events", got-before)
		}
		if n := e.auditCount("case.access.first"); n != 1 {
			t.Errorf("case.access.first events = %d, want 1", n)
		}
		a, err := e.cs.GetAccess(e.ctx, "T20260001", e.id("nora"))
		if err != nil || a.ViaKind != caseaccess.ViaInvite || !a.FirstAt.Equal(t0) {
			t.Errorf("access record = %+v, %v", a, err)
		}
		if _, err := e.svc.Decide(e.ctx, admin, "NOPE", "nora"); !isKind(err, caseaccess.KindNotFound, "ref") {
			t.Errorf("unknown case: %v", err)
		}
		if _, err := e.svc.Decide(e.ctx, admin, "T20260001", "nobody"); !isKind(err, caseaccess.KindNotFound, "user") {
			t.Errorf("unknown user: %v", err)
		}
	})
}

// TestRemovedGrantKeepsUsersWhoAccessed: removing a group or domain grant
// stops users who have not yet accessed; those who did keep a retained
// access with the grant's provenance.
func TestRemovedGrantKeepsUsersWhoAccessed(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		g, err := e.svc.AddGroupGrant(e.ctx, admin, "T20260001", caseaccess.GroupInput{UsualRole: "NOMS", Location: "Southwark"})
		if err != nil {
			t.Fatal(err)
		}
		dg, err := e.svc.AddDomainGrant(e.ctx, admin, "T20260001", caseaccess.DomainInput{Domain: "johnson.co.uk.cjsm.net", Defendants: []string{"Smith"}})
		if err != nil {
			t.Fatal(err)
		}
		if d := e.decide("nora"); !d.Allowed || d.Via.Kind != caseaccess.ViaGroup { // nora accesses; nell (also NOMS Southwark) does not
			t.Fatalf("nora: %+v", d)
		}
		if d := e.decide("dan"); !d.Allowed || d.Via.Kind != caseaccess.ViaDomain { // dan accesses; dora does not
			t.Fatalf("dan: %+v", d)
		}
		if _, n, err := e.svc.RemoveGroupGrant(e.ctx, admin, "T20260001", g.ID); err != nil || n != 1 {
			t.Fatalf("remove group grant: retained %d, %v", n, err)
		}
		if _, n, err := e.svc.RemoveDomainGrant(e.ctx, admin, "T20260001", dg.ID); err != nil || n != 1 {
			t.Fatalf("remove domain grant: retained %d, %v", n, err)
		}
		for _, tc := range []struct {
			user    string
			allowed bool
			from    caseaccess.ViaKind
			id      string
		}{
			{"nora", true, caseaccess.ViaGroup, g.ID},
			{"nell", false, "", ""},
			{"dan", true, caseaccess.ViaDomain, dg.ID},
			{"dora", false, "", ""},
		} {
			d := e.decide(tc.user)
			if d.Allowed != tc.allowed {
				t.Errorf("%s: allowed = %v, want %v", tc.user, d.Allowed, tc.allowed)
				continue
			}
			if tc.allowed && (d.Via.Kind != caseaccess.ViaRetained || d.Via.RetainedFrom != tc.from || d.Via.ID != tc.id) {
				t.Errorf("%s: via = %+v, want retained from %s %s", tc.user, d.Via, tc.from, tc.id)
			}
		}
		if d := e.decide("dan"); !reflect.DeepEqual(d.Defendants, []string{"Smith"}) {
			t.Errorf("retained domain access keeps its defendants: %v", d.Defendants)
		}
		if n := e.auditCount("case.access.retain"); n != 2 {
			t.Errorf("case.access.retain events = %d, want 2", n)
		}
		if _, _, err := e.svc.RemoveGroupGrant(e.ctx, admin, "T20260001", g.ID); !isKind(err, caseaccess.KindNotFound, "grant") {
			t.Errorf("removing twice: %v", err)
		}
		// A new grant covering nora replaces the retained provenance; her
		// first access time is kept.
		e.clk.Set(t0.Add(time.Hour))
		g2, err := e.svc.AddGroupGrant(e.ctx, admin, "T20260001", caseaccess.GroupInput{UsualRole: "NOMS"})
		if err != nil {
			t.Fatal(err)
		}
		d := e.decide("nora")
		if !d.Allowed || d.Via.Kind != caseaccess.ViaGroup || d.Via.ID != g2.ID || d.FirstAccess || !d.FirstAccessAt.Equal(t0) {
			t.Fatalf("nora under the new grant: %+v", d)
		}
		a, err := e.cs.GetAccess(e.ctx, "T20260001", e.id("nora"))
		if err != nil || a.RetainedAt != nil || a.ViaID != g2.ID {
			t.Fatalf("access record: %+v, %v", a, err)
		}
		if n := e.auditCount("case.access.via"); n != 1 {
			t.Errorf("case.access.via events = %d, want 1", n)
		}
	})
}

// TestRevokedInviteIsNotRetained: an invite's end removes access even
// after the user accessed the case.
func TestRevokedInviteIsNotRetained(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		inv := e.invite(caseaccess.InviteInput{User: "nick", Role: caseaccess.RoleFeePaidJudge})
		if d := e.decide("nick"); !d.Allowed {
			t.Fatalf("nick: %+v", d)
		}
		if _, err := e.svc.Revoke(e.ctx, admin, "T20260001", inv.ID); err != nil {
			t.Fatal(err)
		}
		if d := e.decide("nick"); d.Allowed {
			t.Fatalf("nick still allowed after revoke: %+v", d)
		}
		if _, err := e.svc.Revoke(e.ctx, admin, "T20260001", inv.ID); !isKind(err, caseaccess.KindConflict, "invite") {
			t.Errorf("revoke twice: %v", err)
		}
		if _, err := e.svc.Revoke(e.ctx, admin, "T20260001", "no-such"); !isKind(err, caseaccess.KindNotFound, "invite") {
			t.Errorf("revoke unknown: %v", err)
		}
		// re-invite after revoke is allowed
		e.invite(caseaccess.InviteInput{User: "nick", Role: caseaccess.RoleFeePaidJudge})
		if n := e.auditCount("case.invite.revoke"); n != 1 {
			t.Errorf("case.invite.revoke events = %d", n)
		}
	})
}

// TestRetainedThroughEveryGrantUsed: a user who accessed the case through a
// group grant keeps access when it is removed even if their last access
// went through something else (here an invite, revoked afterwards); a user
// the removed grant no longer covered (moved location) keeps nothing.
func TestRetainedThroughEveryGrantUsed(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		g, err := e.svc.AddGroupGrant(e.ctx, admin, "T20260001", caseaccess.GroupInput{UsualRole: "NOMS", Location: "Southwark"})
		if err != nil {
			t.Fatal(err)
		}
		if d := e.decide("nora"); !d.Allowed || d.Via.Kind != caseaccess.ViaGroup || !d.FirstAccess {
			t.Fatalf("nora via group: %+v", d)
		}
		if d := e.decide("nell"); !d.Allowed || d.Via.Kind != caseaccess.ViaGroup {
			t.Fatalf("nell via group: %+v", d)
		}
		e.clk.Set(t0.Add(time.Minute))
		inv := e.invite(caseaccess.InviteInput{User: "nora", Role: caseaccess.RoleFeePaidJudge})
		if d := e.decide("nora"); !d.Allowed || d.Via.Kind != caseaccess.ViaInvite || d.FirstAccess {
			t.Fatalf("nora via invite: %+v", d)
		}
		// nell moves to Leeds: the group grant no longer covers her.
		nell, err := e.st.GetUser(e.ctx, e.id("nell"))
		if err != nil {
			t.Fatal(err)
		}
		nell.Location = "Leeds"
		if err := e.st.Update(e.ctx, admin, func(ctx context.Context, tx store.Tx) error { return tx.UpdateUser(ctx, &nell, 0) }); err != nil {
			t.Fatal(err)
		}
		e.clk.Set(t0.Add(2 * time.Minute))
		if _, n, err := e.svc.RemoveGroupGrant(e.ctx, admin, "T20260001", g.ID); err != nil || n != 1 {
			t.Fatalf("remove group grant: retained %d, %v; want 1 (nora)", n, err)
		}
		if d := e.decide("nora"); !d.Allowed || d.Via.Kind != caseaccess.ViaInvite {
			t.Fatalf("nora while her invite lives: %+v", d)
		}
		if _, err := e.svc.Revoke(e.ctx, admin, "T20260001", inv.ID); err != nil {
			t.Fatal(err)
		}
		d := e.decide("nora")
		if !d.Allowed || d.Via.Kind != caseaccess.ViaRetained || d.Via.RetainedFrom != caseaccess.ViaGroup || d.Via.ID != g.ID ||
			!d.Via.RetainedAt.Equal(t0.Add(2*time.Minute)) || !d.AllDefendants || !d.FirstAccessAt.Equal(t0) {
			t.Fatalf("nora after the invite ended: %+v; want retained from the removed group grant", d)
		}
		if d := e.decide("nell"); d.Allowed {
			t.Fatalf("nell (no longer covered when the grant went) kept access: %+v", d.Via)
		}
		var retained []string
		_ = e.st.Audit(e.ctx, storeFilter("case.access.retain"), func(ev auditEvent) error {
			if ev.Actor != admin.Actor {
				t.Errorf("retain event by %q", ev.Actor)
			}
			retained = append(retained, ev.ObjectID)
			return nil
		})
		if !reflect.DeepEqual(retained, []string{e.id("nora")}) {
			t.Errorf("case.access.retain events for %v, want nora only", retained)
		}
	})
}

// TestConcurrentFirstAccess: simultaneous first decisions record one first
// access.
func TestConcurrentFirstAccess(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		e.invite(caseaccess.InviteInput{User: "nick", Role: caseaccess.RoleFeePaidJudge})
		const n = 4
		var wg sync.WaitGroup
		ds := make([]caseaccess.Decision, n)
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ds[i], errs[i] = e.svc.Decide(e.ctx, admin, "T20260001", "nick")
			}()
		}
		wg.Wait()
		firsts := 0
		for i := range n {
			if errs[i] != nil || !ds[i].Allowed {
				t.Fatalf("decision %d: %+v, %v", i, ds[i], errs[i])
			}
			if ds[i].FirstAccess {
				firsts++
			}
		}
		if firsts != 1 || e.auditCount("case.access.first") != 1 {
			t.Errorf("first accesses: %d flagged, %d audited; want 1 and 1", firsts, e.auditCount("case.access.first"))
		}
	})
}

// TestDeniedListsLiveGrantors: a denial lists the active users with a live
// granting invite, not those whose invite expired (even before the sweep),
// nor inactive ones, nor non-granting roles.
func TestDeniedListsLiveGrantors(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		e.invite(caseaccess.InviteInput{User: "ola", Role: caseaccess.RoleOutsideProsecutingAdvocate, ExpiresAt: ptr(t0.Add(time.Hour))})
		e.invite(caseaccess.InviteInput{User: "nora", Role: caseaccess.RoleOutsideProsecutingAdvocate})
		e.invite(caseaccess.InviteInput{User: "nick", Role: caseaccess.RoleFeePaidJudge})
		names := func(d caseaccess.Decision) []string {
			var out []string
			for _, g := range d.Grantors {
				out = append(out, g.UserName+"/"+string(g.Role))
			}
			return out
		}
		if got := names(e.decide("ivy")); !reflect.DeepEqual(got, []string{"nora/outside-prosecuting-advocate", "ola/outside-prosecuting-advocate", "pat/prosecutor"}) {
			t.Fatalf("grantors = %v", got)
		}
		nora, err := e.st.GetUser(e.ctx, e.id("nora"))
		if err != nil {
			t.Fatal(err)
		}
		nora.Active = false
		if err := e.st.Update(e.ctx, admin, func(ctx context.Context, tx store.Tx) error { return tx.UpdateUser(ctx, &nora, 0) }); err != nil {
			t.Fatal(err)
		}
		e.clk.Set(t0.Add(time.Hour)) // ola's invite expires (no sweep ran)
		d := e.decide("ivy")
		if got := names(d); !reflect.DeepEqual(got, []string{"pat/prosecutor"}) {
			t.Fatalf("grantors after ola's expiry and nora's deactivation = %v", got)
		}
		if d.Grantors[0].Email != "pat@cps.gov.uk" || d.Grantors[0].DisplayName != "pat" || d.Grantors[0].UserID != e.id("pat") {
			t.Errorf("grantor = %+v", d.Grantors[0])
		}
	})
}

// TestUsedGrantsOfOldRecords: a record written before the grant list
// (migration 0051) stands for its last group or domain grant, retained or
// not; an invite record has no list.
func TestUsedGrantsOfOldRecords(t *testing.T) {
	at := t0.Add(time.Hour)
	for _, tc := range []struct {
		name string
		a    caseaccess.Access
		want []caseaccess.UsedGrant
	}{
		{"group, retained", caseaccess.Access{FirstAt: t0, ViaKind: caseaccess.ViaGroup, ViaID: "g1", ViaDetail: "NOMS", AllDefendants: true, RetainedAt: &at},
			[]caseaccess.UsedGrant{{Kind: caseaccess.ViaGroup, ID: "g1", Detail: "NOMS", AllDefendants: true, FirstAt: t0, RetainedAt: &at}}},
		{"domain", caseaccess.Access{FirstAt: t0, ViaKind: caseaccess.ViaDomain, ViaID: "d1", Defendants: []string{"Smith"}},
			[]caseaccess.UsedGrant{{Kind: caseaccess.ViaDomain, ID: "d1", Defendants: []string{"Smith"}, FirstAt: t0}}},
		{"invite", caseaccess.Access{FirstAt: t0, ViaKind: caseaccess.ViaInvite, ViaID: "i1"}, nil},
		{"new record", caseaccess.Access{FirstAt: t0, ViaKind: caseaccess.ViaInvite, ViaID: "i1",
			Grants: []caseaccess.UsedGrant{{Kind: caseaccess.ViaGroup, ID: "g2", FirstAt: t0}}},
			[]caseaccess.UsedGrant{{Kind: caseaccess.ViaGroup, ID: "g2", FirstAt: t0}}},
	} {
		if got := tc.a.UsedGrants(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: UsedGrants() = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
