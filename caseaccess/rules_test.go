package caseaccess_test

import (
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/caseaccess"
)

func TestNormalizeDomain(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"johnson.co.uk.cjsm.net", "johnson.co.uk.cjsm.net", true},
		{"Swatham.CJSM.net.", "swatham.cjsm.net", true},
		{"a-b.example.org", "a-b.example.org", true},
		{"", "", false},
		{"localhost", "", false},
		{"bad..example.org", "", false},
		{"-bad.example.org", "", false},
		{"bad-.example.org", "", false},
		{"user@example.org", "", false},
		{"exa mple.org", "", false},
		{"example.123", "", false},
		{"ex_ample.org", "", false},
		{"*.example.org", "", false},
	} {
		got, ok := caseaccess.NormalizeDomain(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("NormalizeDomain(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestInviteBadInput: each bad invite is refused with the right kind and
// field, and nothing is written (no audit event, invite or notification).
func TestInviteBadInput(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		// dan is a defence advocate (cannot grant); ola has an expired-only invite.
		e.invite(caseaccess.InviteInput{User: "dan", Role: caseaccess.RoleDefenceAdvocate, Defendants: []string{"Smith"}})
		e.invite(caseaccess.InviteInput{User: "nora", Role: caseaccess.RoleFeePaidJudge})
		ctx := e.ctx
		before, notesBefore := e.auditCount(""), len(e.notes())
		invsBefore, _ := e.cs.ListInvites(ctx, caseaccess.InviteQuery{IncludeRevoked: true})
		future := ptr(t0.Add(time.Hour))
		for _, tc := range []struct {
			name  string
			in    caseaccess.InviteInput
			kind  caseaccess.ErrorKind
			field string
		}{
			{"unknown case", caseaccess.InviteInput{CaseRef: "NOPE", User: "nick", Inviter: "pat", Role: caseaccess.RoleFeePaidJudge}, caseaccess.KindNotFound, "ref"},
			{"unknown user", caseaccess.InviteInput{User: "nobody", Role: caseaccess.RoleFeePaidJudge}, caseaccess.KindNotFound, "user"},
			{"unknown inviter", caseaccess.InviteInput{User: "nick", Inviter: "ghost", Role: caseaccess.RoleFeePaidJudge}, caseaccess.KindNotFound, "inviter"},
			{"expiry in the past", caseaccess.InviteInput{User: "nick", Role: caseaccess.RoleFeePaidJudge, ExpiresAt: ptr(t0.Add(-time.Minute))}, caseaccess.KindInvalid, "expiresAt"},
			{"expiry now", caseaccess.InviteInput{User: "nick", Role: caseaccess.RoleFeePaidJudge, ExpiresAt: ptr(t0)}, caseaccess.KindInvalid, "expiresAt"},
			// Expiries are kept to the microsecond: one under a microsecond
			// ahead would be stored as now, an invite that never was live.
			{"expiry under a microsecond ahead", caseaccess.InviteInput{User: "nick", Role: caseaccess.RoleFeePaidJudge, ExpiresAt: ptr(t0.Add(999 * time.Nanosecond))}, caseaccess.KindInvalid, "expiresAt"},
			{"defence advocate without defendants", caseaccess.InviteInput{User: "dora", Role: caseaccess.RoleDefenceAdvocate, ExpiresAt: future}, caseaccess.KindInvalid, "defendants"},
			{"blank defendants", caseaccess.InviteInput{User: "dora", Role: caseaccess.RoleDefenceAdvocate, Defendants: []string{" "}}, caseaccess.KindInvalid, "defendants"},
			{"defendant not of the case", caseaccess.InviteInput{User: "dora", Role: caseaccess.RoleDefenceAdvocate, Defendants: []string{"Brown"}}, caseaccess.KindInvalid, "defendants"},
			{"unknown role", caseaccess.InviteInput{User: "nick", Role: "janitor"}, caseaccess.KindInvalid, "role"},
			{"inviter without access", caseaccess.InviteInput{User: "nick", Inviter: "ola", Role: caseaccess.RoleFeePaidJudge}, caseaccess.KindForbidden, "inviter"},
			{"inviter cannot grant", caseaccess.InviteInput{User: "nick", Inviter: "dan", Role: caseaccess.RoleFeePaidJudge}, caseaccess.KindForbidden, "inviter"},
			{"duplicate invite", caseaccess.InviteInput{User: "dan", Role: caseaccess.RoleDefenceAdvocate, Defendants: []string{"Jones"}}, caseaccess.KindConflict, "user"},
			{"user required", caseaccess.InviteInput{Role: caseaccess.RoleFeePaidJudge}, caseaccess.KindInvalid, "user"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				in := tc.in
				if in.CaseRef == "" {
					in.CaseRef = "T20260001"
				}
				if in.Inviter == "" {
					in.Inviter = "pat"
				}
				_, err := e.svc.Invite(ctx, admin, in)
				ce, ok := caseaccess.AsError(err)
				if !ok {
					t.Fatalf("err = %v, want a *caseaccess.Error", err)
				}
				if ce.Kind != tc.kind || ce.Field != tc.field {
					t.Fatalf("err = %v (kind %d field %q), want kind %d field %q", err, ce.Kind, ce.Field, tc.kind, tc.field)
				}
			})
		}
		if got := e.auditCount(""); got != before {
			t.Errorf("audit events %d -> %d: a refused invite wrote something", before, got)
		}
		if got := len(e.notes()); got != notesBefore {
			t.Errorf("notifications %d -> %d after refused invites", notesBefore, got)
		}
		invsAfter, _ := e.cs.ListInvites(ctx, caseaccess.InviteQuery{IncludeRevoked: true})
		if len(invsAfter) != len(invsBefore) {
			t.Errorf("invites %d -> %d after refused invites", len(invsBefore), len(invsAfter))
		}
	})
}

// TestInviteRecordsAuditAndNotifies: an accepted invite is audited with its
// actor and notifies invitee and inviter.
func TestInviteRecordsAuditAndNotifies(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		exp := t0.Add(48 * time.Hour)
		inv := e.invite(caseaccess.InviteInput{User: "dan@johnson.co.uk.cjsm.net", Role: caseaccess.RoleDefenceAdvocate,
			Defendants: []string{"Smith", "Smith"}, ExpiresAt: &exp, Message: "Please review the bundle"})
		if inv.UserID != e.id("dan") || inv.InviterID != e.id("pat") || len(inv.Defendants) != 1 || !inv.ExpiresAt.Equal(exp) {
			t.Fatalf("invite = %+v", inv)
		}
		got, err := e.cs.GetInvite(e.ctx, inv.ID)
		if err != nil || got.Message != "Please review the bundle" || !got.ExpiresAt.Equal(exp) || got.Role != caseaccess.RoleDefenceAdvocate {
			t.Fatalf("stored invite = %+v, %v", got, err)
		}
		n := 0
		_ = e.st.Audit(e.ctx, storeFilter("case.invite.create"), func(ev auditEvent) error {
			if ev.Actor == admin.Actor && ev.ObjectID == e.id("dan") {
				n++
			}
			return nil
		})
		if n != 1 {
			t.Errorf("case.invite.create events for dan by %s = %d, want 1", admin.Actor, n)
		}
		var invitee, inviter bool
		for _, no := range e.notes() {
			if no.Kind == caseaccess.NoteInviteCreated && no.InviteID == inv.ID {
				invitee = invitee || no.RecipientID == e.id("dan")
				inviter = inviter || no.RecipientID == e.id("pat")
			}
		}
		if !invitee || !inviter {
			t.Errorf("invite notifications: invitee %v inviter %v, want both", invitee, inviter)
		}
		owner := false // the case owner's invite (made at case creation) notified pat too
		for _, no := range e.notes() {
			owner = owner || (no.Kind == caseaccess.NoteInviteCreated && no.RecipientID == e.id("pat") && no.InviteID != inv.ID)
		}
		if !owner {
			t.Errorf("no notification for the case owner's invite")
		}
	})
}

func TestDomainGrantRules(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		before := e.auditCount("")
		for _, tc := range []struct {
			name  string
			in    caseaccess.DomainInput
			kind  caseaccess.ErrorKind
			field string
		}{
			{"malformed", caseaccess.DomainInput{Domain: "not a domain", Defendants: []string{"Smith"}}, caseaccess.KindInvalid, "domain"},
			{"no dot", caseaccess.DomainInput{Domain: "cjsm", Defendants: []string{"Smith"}}, caseaccess.KindInvalid, "domain"},
			{"empty", caseaccess.DomainInput{Defendants: []string{"Smith"}}, caseaccess.KindInvalid, "domain"},
			{"chambers by its users' e-mails", caseaccess.DomainInput{Domain: "chambers.co.uk", Defendants: []string{"Smith"}}, caseaccess.KindInvalid, "domain"},
			{"chambers CJSM domain", caseaccess.DomainInput{Domain: "Chambers.co.uk.cjsm.net", Defendants: []string{"Smith"}}, caseaccess.KindInvalid, "domain"},
			{"configured chambers", caseaccess.DomainInput{Domain: "configured-chambers.co.uk.cjsm.net", Defendants: []string{"Smith"}}, caseaccess.KindInvalid, "domain"},
			{"no defendants", caseaccess.DomainInput{Domain: "johnson.co.uk.cjsm.net"}, caseaccess.KindInvalid, "defendants"},
			{"unknown defendant", caseaccess.DomainInput{Domain: "johnson.co.uk.cjsm.net", Defendants: []string{"Brown"}}, caseaccess.KindInvalid, "defendants"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := e.svc.AddDomainGrant(e.ctx, admin, "T20260001", tc.in)
				ce, ok := caseaccess.AsError(err)
				if !ok || ce.Kind != tc.kind || ce.Field != tc.field {
					t.Fatalf("err = %v, want kind %d field %q", err, tc.kind, tc.field)
				}
			})
		}
		if _, err := e.svc.AddDomainGrant(e.ctx, admin, "NOPE", caseaccess.DomainInput{Domain: "johnson.co.uk.cjsm.net", Defendants: []string{"Smith"}}); !isKind(err, caseaccess.KindNotFound, "ref") {
			t.Errorf("unknown case: %v", err)
		}
		if got := e.auditCount(""); got != before {
			t.Errorf("audit events %d -> %d: a refused domain grant wrote something", before, got)
		}
		g, err := e.svc.AddDomainGrant(e.ctx, admin, "T20260001", caseaccess.DomainInput{Domain: "Johnson.co.uk.cjsm.net", Defendants: []string{"Smith"}})
		if err != nil || g.Domain != "johnson.co.uk.cjsm.net" {
			t.Fatalf("solicitor domain: %+v, %v", g, err)
		}
		if _, err := e.svc.AddDomainGrant(e.ctx, admin, "T20260001", caseaccess.DomainInput{Domain: "johnson.co.uk.cjsm.net", Defendants: []string{"Jones"}}); !isKind(err, caseaccess.KindConflict, "domain") {
			t.Errorf("duplicate domain grant: %v", err)
		}
		if e.auditCount("case.domain.add") != 1 {
			t.Errorf("case.domain.add events = %d, want 1", e.auditCount("case.domain.add"))
		}
	})
}

func TestGroupGrantRules(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		if _, err := e.svc.AddGroupGrant(e.ctx, admin, "T20260001", caseaccess.GroupInput{}); !isKind(err, caseaccess.KindInvalid, "usualRole") {
			t.Errorf("missing usual role: %v", err)
		}
		if _, err := e.svc.AddGroupGrant(e.ctx, admin, "NOPE", caseaccess.GroupInput{UsualRole: "NOMS"}); !isKind(err, caseaccess.KindNotFound, "ref") {
			t.Errorf("unknown case: %v", err)
		}
		if _, err := e.svc.AddGroupGrant(e.ctx, admin, "T20260001", caseaccess.GroupInput{UsualRole: "NOMS", Location: "Southwark"}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.AddGroupGrant(e.ctx, admin, "T20260001", caseaccess.GroupInput{UsualRole: "noms", Location: "southwark"}); !isKind(err, caseaccess.KindConflict, "usualRole") {
			t.Errorf("duplicate group grant: %v", err)
		}
	})
}

func isKind(err error, k caseaccess.ErrorKind, field string) bool {
	ce, ok := caseaccess.AsError(err)
	return ok && ce.Kind == k && ce.Field == field
}
