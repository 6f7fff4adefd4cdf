package caseaccess_test

import (
	"context"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/caseaccess"
)

// runExpirer starts an Expirer on e's store and clock; it stops at cleanup.
func runExpirer(t *testing.T, e *env, holder string) (*caseaccess.Expirer, chan caseaccess.SweepResult, context.CancelFunc) {
	t.Helper()
	sweeps := make(chan caseaccess.SweepResult, 100)
	x, err := caseaccess.NewExpirer(caseaccess.ExpirerOptions{Service: e.svc, Store: e.cs, Clock: e.clk, Holder: holder,
		LeaseTTL: 2 * time.Hour, MaxWait: time.Hour, OnSweep: func(r caseaccess.SweepResult) { sweeps <- r }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("expirer: %v", err)
		}
	}
	t.Cleanup(func() {
		select {
		case <-ctx.Done():
		default:
			stop()
		}
	})
	return x, sweeps, func() {
		if ctx.Err() == nil {
			stop()
		}
	}
}

// next waits for the expirer's next pass and the timer it arms.
func next(t *testing.T, e *env, sweeps chan caseaccess.SweepResult) (caseaccess.SweepResult, time.Time) {
	t.Helper()
	select {
	case r := <-sweeps:
		if r.Err != nil {
			t.Fatalf("sweep error: %v", r.Err)
		}
		select {
		case d := <-e.clk.armed:
			return r, d
		case <-time.After(30 * time.Second): // a hang guard, not synchronisation
			t.Fatal("expirer armed no timer")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("expirer made no pass")
	}
	panic("unreachable")
}

func TestExpirerRevokesAtExpiry(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		nick := e.invite(caseaccess.InviteInput{User: "nick", Role: caseaccess.RoleFeePaidJudge, ExpiresAt: ptr(t0.Add(10 * time.Minute))})
		nora := e.invite(caseaccess.InviteInput{User: "nora", Role: caseaccess.RoleFeePaidJudge, ExpiresAt: ptr(t0.Add(20 * time.Minute))})
		e.invite(caseaccess.InviteInput{User: "nell", Role: caseaccess.RoleFeePaidJudge}) // never expires
		x, sweeps, stop := runExpirer(t, e, "replica-a")
		e.svc.SetOnChange(x.Kick)

		r, deadline := next(t, e, sweeps)
		if !r.Leader || r.Expired != 0 || !deadline.Equal(t0.Add(10*time.Minute)) {
			t.Fatalf("start: %+v, timer at %v; want the timer at nick's expiry", r, deadline)
		}
		// A new, earlier invite re-arms the timer at once.
		dan := e.invite(caseaccess.InviteInput{User: "dan", Role: caseaccess.RoleDefenceAdvocate, Defendants: []string{"Smith"}, ExpiresAt: ptr(t0.Add(5 * time.Minute))})
		if _, deadline = next(t, e, sweeps); !deadline.Equal(t0.Add(5 * time.Minute)) {
			t.Fatalf("after an earlier invite the timer is at %v, want %v", deadline, t0.Add(5*time.Minute))
		}
		// Changing an expiry re-arms it too.
		if _, err := e.svc.SetExpiry(e.ctx, admin, "T20260001", nora.ID, ptr(t0.Add(3*time.Minute))); err != nil {
			t.Fatal(err)
		}
		if _, deadline = next(t, e, sweeps); !deadline.Equal(t0.Add(3 * time.Minute)) {
			t.Fatalf("after moving nora's expiry the timer is at %v", deadline)
		}
		if _, err := e.svc.SetExpiry(e.ctx, admin, "T20260001", nora.ID, ptr(t0.Add(-time.Minute))); !isKind(err, caseaccess.KindInvalid, "expiresAt") {
			t.Errorf("expiry moved into the past: %v", err)
		}

		e.clk.Set(t0.Add(3 * time.Minute)) // nora's expiry
		if r, deadline = next(t, e, sweeps); r.Expired != 1 || !deadline.Equal(t0.Add(5*time.Minute)) {
			t.Fatalf("at nora's expiry: %+v, next timer %v", r, deadline)
		}
		if d := e.decide("nora"); d.Allowed {
			t.Errorf("nora allowed after expiry: %+v", d)
		}
		if d := e.decide("dan"); !d.Allowed {
			t.Errorf("dan denied before his expiry: %+v", d)
		}
		e.clk.Set(t0.Add(5 * time.Minute))
		if r, deadline = next(t, e, sweeps); r.Expired != 1 || !deadline.Equal(t0.Add(10*time.Minute)) {
			t.Fatalf("at dan's expiry: %+v, next timer %v", r, deadline)
		}
		e.clk.Set(t0.Add(10 * time.Minute))
		if r, _ = next(t, e, sweeps); r.Expired != 1 || !r.Next.IsZero() {
			t.Fatalf("at nick's expiry: %+v", r)
		}
		stop()

		for _, id := range []string{nick.ID, nora.ID, dan.ID} {
			inv, err := e.cs.GetInvite(e.ctx, id)
			if err != nil || inv.RevokedAt == nil || inv.RevokeReason != caseaccess.ReasonExpired {
				t.Errorf("invite %s: %+v, %v; want expired", id, inv, err)
			}
		}
		if n := e.auditCount("case.invite.expire"); n != 3 {
			t.Errorf("case.invite.expire audit events = %d, want 3", n)
		}
		got := map[string]int{}
		for _, n := range e.notes() {
			if n.Kind == caseaccess.NoteInviteExpired {
				got[n.RecipientID]++
			}
		}
		if got[e.id("nick")] != 1 || got[e.id("nora")] != 1 || got[e.id("dan")] != 1 || got[e.id("pat")] != 3 {
			t.Errorf("expiry notifications by recipient = %v; want one per invitee and three for pat (inviter)", got)
		}
		v, err := e.st.VerifyAudit(e.ctx)
		if err != nil || !v.OK() {
			t.Errorf("audit chain: %v %+v", err, v)
		}
	})
}

// TestExpirerOneReplica: only the lease holder expires; another replica
// takes over when the holder stops.
func TestExpirerOneReplica(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		e.invite(caseaccess.InviteInput{User: "nick", Role: caseaccess.RoleFeePaidJudge, ExpiresAt: ptr(t0.Add(10 * time.Minute))})
		_, sa, stopA := runExpirer(t, e, "replica-a")
		if r, _ := next(t, e, sa); !r.Leader {
			t.Fatalf("replica a is not the leader: %+v", r)
		}
		_, sb, _ := runExpirer(t, e, "replica-b")
		if r, d := next(t, e, sb); r.Leader || !d.Equal(t0.Add(time.Hour)) {
			t.Fatalf("replica b: %+v (timer %v); want a follower polling every maxWait", r, d)
		}
		stopA() // releases the lease
		e.clk.Set(t0.Add(time.Hour))
		if r, _ := next(t, e, sb); !r.Leader || r.Expired != 1 {
			t.Fatalf("replica b after a stopped: %+v; want leader, 1 expired", r)
		}
	})
}

// TestExpiryAcrossRestart: an invite that expires while no daemon runs is
// revoked as soon as one starts again, on a reopened store.
func TestExpiryAcrossRestart(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		inv := e.invite(caseaccess.InviteInput{User: "nick", Role: caseaccess.RoleFeePaidJudge, ExpiresAt: ptr(t0.Add(10 * time.Minute))})
		_, sweeps, stop := runExpirer(t, e, "replica-a")
		if _, d := next(t, e, sweeps); !d.Equal(t0.Add(10 * time.Minute)) {
			t.Fatalf("timer at %v", d)
		}
		stop()
		e.reopen()                            // the daemon restarts...
		e.clk.Set(t0.Add(3 * time.Hour))      // ...long after the expiry
		if d := e.decide("nick"); d.Allowed { // the decision never honours a passed expiry
			t.Fatalf("nick allowed past expiry: %+v", d)
		}
		_, sweeps, stop = runExpirer(t, e, "replica-a2")
		r, _ := next(t, e, sweeps)
		stop()
		if !r.Leader || r.Expired != 1 {
			t.Fatalf("first pass after restart: %+v; want the missed expiry applied", r)
		}
		got, err := e.cs.GetInvite(e.ctx, inv.ID)
		if err != nil || got.RevokeReason != caseaccess.ReasonExpired {
			t.Fatalf("invite after restart: %+v, %v", got, err)
		}
		if n := e.auditCount("case.invite.expire"); n != 1 {
			t.Errorf("expire events = %d", n)
		}
	})
}

// TestRevokePastExpiry: revoking an invite whose expiry has passed but
// that no sweep has revoked yet (e.g. at a restart, before the first pass)
// is refused as already ended, and the expiry is applied then: the invite
// ends as expired, with its expiry event and notifications, not as revoked.
func TestRevokePastExpiry(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		inv := e.invite(caseaccess.InviteInput{User: "nick", Role: caseaccess.RoleFeePaidJudge, ExpiresAt: ptr(t0.Add(10 * time.Minute))})
		e.clk.Set(t0.Add(10 * time.Minute)) // exactly at the expiry
		_, err := e.svc.Revoke(e.ctx, admin, "T20260001", inv.ID)
		if !isKind(err, caseaccess.KindConflict, "invite") {
			t.Fatalf("revoke past expiry: %v; want a conflict: the invite already ended", err)
		}
		got, err := e.cs.GetInvite(e.ctx, inv.ID)
		if err != nil || got.RevokedAt == nil || got.RevokeReason != caseaccess.ReasonExpired {
			t.Fatalf("invite = %+v, %v; want expired", got, err)
		}
		if n, m := e.auditCount("case.invite.expire"), e.auditCount("case.invite.revoke"); n != 1 || m != 0 {
			t.Errorf("audit: %d expire and %d revoke events; want 1 and 0", n, m)
		}
		n := 0
		for _, note := range e.notes() {
			if note.Kind == caseaccess.NoteInviteExpired && note.InviteID == inv.ID {
				n++
			}
		}
		if n != 2 {
			t.Errorf("expiry notifications = %d, want 2 (invitee and inviter)", n)
		}
	})
}
