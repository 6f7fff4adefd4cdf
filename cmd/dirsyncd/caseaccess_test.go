package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/caseaccess"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

func TestCasesCommands(t *testing.T) {
	cfg, db := writeConfig(t, "caseAccess: {chambersDomains: [chambers.example.org]}\n")
	if r := run(t, "migrate", "--config", cfg); r.code != 0 {
		t.Fatalf("migrate: %+v", r)
	}
	st := openTestStore(t, db)
	err := st.Update(context.Background(), audit.Meta{Actor: "test"}, func(ctx context.Context, tx store.Tx) error {
		for _, n := range []string{"pat", "dan"} {
			if err := tx.CreateUser(ctx, &directory.User{UserName: n, Email: n + "@example.org", Active: true}); err != nil {
				return err
			}
		}
		return nil
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	c := []string{"--config", cfg, "--actor", "cli:tester"}
	if r := run(t, append([]string{"cases", "create", "--case", "T1", "--defendant", "Smith", "--owner", "pat"}, c...)...); r.code != 0 {
		t.Fatalf("create: %+v", r)
	}
	r := run(t, append([]string{"cases", "invite", "--case", "T1", "--user", "dan", "--inviter", "pat", "--role", "defence-advocate"}, c...)...)
	if r.code != 2 || !strings.Contains(r.stderr, "defendants") {
		t.Fatalf("invite without defendants: %+v", r)
	}
	r = run(t, append([]string{"cases", "invite", "--case", "T1", "--user", "dan", "--inviter", "pat", "--role", "defence-advocate", "--defendant", "Smith", "--expires", "2000-01-01T00:00:00Z"}, c...)...)
	if r.code != 2 || !strings.Contains(r.stderr, "expiresAt") {
		t.Fatalf("invite with past expiry: %+v", r)
	}
	r = run(t, append([]string{"cases", "invite", "--case", "T1", "--user", "dan", "--inviter", "pat", "--role", "defence-advocate", "--defendant", "Smith", "--expires", "72h"}, c...)...)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "invite ") {
		t.Fatalf("invite: %+v", r)
	}
	id := strings.TrimSuffix(strings.Fields(r.stdout)[1], ":")
	if r := run(t, append([]string{"cases", "list", "--case", "T1"}, c...)...); r.code != 0 || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "defence-advocate") {
		t.Fatalf("list: %+v", r)
	}
	if r := run(t, append([]string{"cases", "expire", "--case", "T1", "--invite", id, "--never"}, c...)...); r.code != 0 || !strings.Contains(r.stdout, "expires never") {
		t.Fatalf("expire: %+v", r)
	}
	r = run(t, append([]string{"cases", "access", "--case", "T1", "--user", "dan"}, c...)...)
	var d struct{ Allowed, FirstAccess bool }
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil || r.code != 0 || !d.Allowed || !d.FirstAccess {
		t.Fatalf("access: %v %+v", err, r)
	}
	if r := run(t, append([]string{"cases", "revoke", "--case", "T1", "--invite", id}, c...)...); r.code != 0 || !strings.Contains(r.stdout, "revoked") {
		t.Fatalf("revoke: %+v", r)
	}
	if r := run(t, append([]string{"cases", "revoke", "--case", "NOPE", "--invite", id}, c...)...); r.code != 2 || !strings.Contains(r.stderr, "ref") {
		t.Fatalf("revoke on unknown case: %+v", r)
	}
	r = run(t, "audit", "list", "--config", cfg, "--actor", "cli:tester", "--json")
	var events []audit.Event
	if err := json.Unmarshal([]byte(r.stdout), &events); err != nil || r.code != 0 {
		t.Fatalf("audit list: %v %+v", err, r)
	}
	actions := map[string]bool{}
	for _, e := range events {
		actions[e.Action] = true
	}
	for _, a := range []string{"case.create", "case.invite.create", "case.invite.expiry", "case.invite.revoke", "case.access.first"} {
		if !actions[a] {
			t.Errorf("no %s event by cli:tester (have %v)", a, actions)
		}
	}
}

// caseClock is a settable clock for the expiry timer: a timer fires when
// Set reaches its deadline.
type caseClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*caseTimer
}

type caseTimer struct {
	c        chan time.Time
	deadline time.Time
	done     bool
}

func (c *caseClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *caseClock) NewTimer(d time.Duration) caseaccess.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &caseTimer{c: make(chan time.Time, 1), deadline: c.now.Add(d)}
	if d <= 0 {
		t.done = true
		t.c <- c.now
	} else {
		c.timers = append(c.timers, t)
	}
	return caseTimerRef{c, t}
}

func (c *caseClock) Set(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = now
	for _, t := range c.timers {
		if !t.done && !t.deadline.After(now) {
			t.done = true
			t.c <- now
		}
	}
}

type caseTimerRef struct {
	clk *caseClock
	t   *caseTimer
}

func (r caseTimerRef) C() <-chan time.Time { return r.t.c }
func (r caseTimerRef) Stop() bool {
	r.clk.mu.Lock()
	defer r.clk.mu.Unlock()
	was := !r.t.done
	r.t.done = true
	return was
}

// TestCaseExpiryAcrossDaemonRestart: `dirsyncd serve` takes an invite with
// an expiry over the API and arms its timer; the daemon stops; the expiry
// passes while it is down; at the next start the expiry is applied (invite
// revoked, audited by the expiry actor, invitee and inviter notified) and
// the decision endpoint denies. The clock is injected; nothing sleeps.
func TestCaseExpiryAcrossDaemonRestart(t *testing.T) {
	cfg, db := writeConfig(t, "")
	if r := run(t, "migrate", "--config", cfg); r.code != 0 {
		t.Fatalf("migrate: %+v", r)
	}
	st := openTestStore(t, db)
	err := st.Update(context.Background(), audit.Meta{Actor: "test"}, func(ctx context.Context, tx store.Tx) error {
		for _, n := range []string{"pat", "dan"} {
			if err := tx.CreateUser(ctx, &directory.User{UserName: n, Email: n + "@example.org", Active: true}); err != nil {
				return err
			}
		}
		return nil
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}

	t0 := time.Now().UTC().Truncate(time.Second)
	clk := &caseClock{now: t0}
	sweeps := make(chan caseaccess.SweepResult, 100)
	addrc := make(chan net.Addr, 1)
	testCaseClock, testCaseSweep = clk, func(r caseaccess.SweepResult) { sweeps <- r }
	testServeReady = func(a net.Addr) { addrc <- a }
	t.Cleanup(func() { testCaseClock, testCaseSweep, testServeReady = nil, nil, nil })

	serve := func() (base string, stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		var out, errb syncBuffer
		done := make(chan int, 1)
		go func() { done <- execute(ctx, []string{"serve", "--config", cfg}, &out, &errb) }()
		select {
		case a := <-addrc:
			base = "http://" + a.String()
		case code := <-done:
			cancel()
			t.Fatalf("serve exited %d: %s", code, errb.String())
		}
		return base, func() {
			cancel()
			if code := <-done; code != 0 {
				t.Fatalf("serve exit %d: %s", code, errb.String())
			}
		}
	}
	// waitSweep returns the first expiry pass that satisfies ok.
	waitSweep := func(what string, ok func(caseaccess.SweepResult) bool) caseaccess.SweepResult {
		t.Helper()
		for {
			select {
			case r := <-sweeps:
				if r.Err != nil {
					t.Fatalf("%s: sweep error %v", what, r.Err)
				}
				if ok(r) {
					return r
				}
			case <-time.After(30 * time.Second): // a hang guard, not synchronisation
				t.Fatalf("%s: no such expiry pass", what)
			}
		}
	}
	do := func(base, method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer ops-secret-token-1234")
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(res.Body).Decode(&m)
		return res.StatusCode, m
	}

	base, stop := serve()
	waitSweep("start", func(r caseaccess.SweepResult) bool { return r.Leader })
	if code, m := do(base, "POST", "/api/v1/cases", `{"ref":"E2E1","defendants":["Smith"],"owners":["pat"]}`); code != 201 {
		t.Fatalf("create case: %d %v", code, m)
	}
	exp := t0.Add(10 * time.Minute)
	code, m := do(base, "POST", "/api/v1/cases/E2E1/invites",
		`{"user":"dan","inviter":"pat","role":"fee-paid-judge","expiresAt":"`+exp.Format(time.RFC3339)+`"}`)
	if code != 201 {
		t.Fatalf("invite: %d %v", code, m)
	}
	inviteID, _ := m["id"].(string)
	waitSweep("timer re-armed by the invite", func(r caseaccess.SweepResult) bool { return r.Next.Equal(exp) })
	if code, m := do(base, "GET", "/api/v1/cases/E2E1/access/dan", ""); code != 200 || m["allowed"] != true {
		t.Fatalf("decision before expiry: %d %v", code, m)
	}
	stop()

	clk.Set(t0.Add(time.Hour)) // the expiry passes while no daemon runs
	base, stop = serve()
	r := waitSweep("first pass after restart", func(r caseaccess.SweepResult) bool { return r.Leader })
	if r.Expired != 1 || !r.Next.IsZero() {
		t.Fatalf("first pass after restart: %+v; want the missed expiry applied", r)
	}
	if code, m := do(base, "GET", "/api/v1/cases/E2E1/access/dan", ""); code != 200 || m["allowed"] != false {
		t.Fatalf("decision after expiry: %d %v", code, m)
	}
	stop()

	st = openTestStore(t, db)
	defer st.Close()
	var expired []audit.Event
	_ = st.Audit(context.Background(), store.AuditFilter{Action: "case.invite.expire"}, func(e audit.Event) error {
		expired = append(expired, e)
		return nil
	})
	if len(expired) != 1 || expired[0].Actor != caseaccess.ActorExpiry || !strings.Contains(string(expired[0].After), inviteID) {
		t.Fatalf("expiry audit events: %+v", expired)
	}
	cs, err := caseAccessStore(st)
	if err != nil {
		t.Fatal(err)
	}
	notes, err := cs.ListNotifications(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	recipients := map[string]bool{}
	for _, n := range notes {
		if n.Kind == caseaccess.NoteInviteExpired && n.InviteID == inviteID {
			recipients[n.RecipientID] = true
		}
	}
	if len(recipients) != 2 {
		t.Fatalf("expiry notifications to %v, want the invitee and the inviter", recipients)
	}
}
