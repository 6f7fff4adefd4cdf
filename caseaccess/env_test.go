package caseaccess_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/caseaccess"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/internal/testenv"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/store/postgres"
	"github.com/dirsyncd/dirsyncd/store/sqlite"
	"github.com/dirsyncd/dirsyncd/store/sqlstore"
)

var (
	t0    = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	admin = audit.Meta{Actor: "admin:tester", RequestID: "req-1"}
)

// backend opens (and reopens, for restart tests) one real store.
type backend struct {
	name string
	open func(t testing.TB) *sqlstore.Store
}

// backends returns SQLite (a file, so it survives a reopen) and PostgreSQL.
func backends(t testing.TB) []backend {
	return []backend{
		{"sqlite", func() func(t testing.TB) *sqlstore.Store {
			path := filepath.Join(t.TempDir(), "dirsyncd.db")
			return func(t testing.TB) *sqlstore.Store {
				s, err := sqlite.Open(context.Background(), path, sqlite.Options{})
				if err != nil {
					t.Fatalf("open sqlite: %v", err)
				}
				return s
			}
		}()},
		{"postgres", func() func(t testing.TB) *sqlstore.Store {
			var dsn string
			return func(t testing.TB) *sqlstore.Store {
				if dsn == "" {
					dsn = testenv.Postgres(t)
				}
				s, err := postgres.Open(context.Background(), dsn, postgres.Options{ConnectTimeout: 10 * time.Second})
				if err != nil {
					t.Fatalf("open postgres: %v", err)
				}
				return s
			}
		}()},
	}
}

// eachBackend runs fn against a fresh migrated store of every backend.
func eachBackend(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			fn(t, newEnv(t, b))
		})
	}
}

type env struct {
	t   testing.TB
	ctx context.Context
	b   backend
	st  *sqlstore.Store
	cs  caseaccess.Store
	clk *fakeClock
	svc *caseaccess.Service
	// users by userName
	u map[string]directory.User
}

func newEnv(t testing.TB, b backend) *env {
	e := &env{t: t, ctx: context.Background(), b: b, clk: newFakeClock(t0), u: map[string]directory.User{}}
	e.openStore()
	e.seed()
	return e
}

func (e *env) openStore() {
	e.st = e.b.open(e.t)
	st := e.st
	e.t.Cleanup(func() { _ = st.Close() })
	if err := e.st.Migrate(e.ctx); err != nil {
		e.t.Fatalf("migrate: %v", err)
	}
	e.cs = e.st.CaseAccess()
	svc, err := caseaccess.New(caseaccess.Options{Store: e.cs, Now: e.clk.Now, ChambersDomains: []string{"configured-chambers.co.uk"}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.svc = svc
}

// reopen closes the store and opens it again (a restart).
func (e *env) reopen() {
	if err := e.st.Close(); err != nil {
		e.t.Fatalf("close: %v", err)
	}
	e.openStore()
}

// seed: firms (a solicitor firm and a chambers), users with usual roles,
// locations and e-mails, and case T20260001 owned by pat (prosecutor).
func (e *env) seed() {
	type usr struct{ name, email, firm, role, loc string }
	users := []usr{
		{"pat", "pat@cps.gov.uk", "", "CPS", "Southwark"},
		{"dan", "dan@johnson.co.uk.cjsm.net", "100", "Defence", "Leeds"},
		{"dora", "dora@johnson.co.uk.cjsm.net", "100", "Defence", "Southwark"},
		{"nora", "nora@noms.gov.uk", "", "NOMS", "Southwark"},
		{"nick", "nick@noms.gov.uk", "", "NOMS", "Leeds"},
		{"nell", "nell@noms.gov.uk", "", "NOMS", "Southwark"},
		{"barb", "barb@chambers.co.uk", "200", "Barrister", "London"},
		{"ola", "ola@cps.gov.uk", "", "CPS", "Leeds"},
		{"ivy", "ivy@example.org", "", "", ""},
	}
	err := e.st.Update(e.ctx, admin, func(ctx context.Context, tx store.Tx) error {
		if err := tx.PutFirm(ctx, &directory.Firm{Number: "100", Name: "Johnson Solicitors", Type: directory.FirmLegalServicesProvider, Enabled: true}); err != nil {
			return err
		}
		if err := tx.PutFirm(ctx, &directory.Firm{Number: "200", Name: "Chambers Row", Type: directory.FirmChambers, Enabled: true}); err != nil {
			return err
		}
		for _, x := range users {
			u := directory.User{UserName: x.name, Email: x.email, Emails: []directory.Email{{Value: x.email, Primary: true}},
				Active: true, FirmNumber: x.firm, UsualRole: x.role, Location: x.loc, DisplayName: x.name}
			if err := tx.CreateUser(ctx, &u); err != nil {
				return err
			}
			e.u[x.name] = u
		}
		return nil
	})
	if err != nil {
		e.t.Fatalf("seed: %v", err)
	}
	if _, _, err := e.svc.CreateCase(e.ctx, admin, caseaccess.CaseInput{Ref: "T20260001", Title: "R v Smith and Jones",
		Defendants: []string{"Smith", "Jones"}, Owners: []string{"pat"}}); err != nil {
		e.t.Fatalf("create case: %v", err)
	}
}

func (e *env) id(name string) string {
	u, ok := e.u[name]
	if !ok {
		e.t.Fatalf("no seeded user %q", name)
	}
	return u.ID
}

// auditCount counts audit events (optionally of one action).
func (e *env) auditCount(action string) int {
	n := 0
	if err := e.st.Audit(e.ctx, store.AuditFilter{Action: action}, func(audit.Event) error { n++; return nil }); err != nil {
		e.t.Fatalf("audit: %v", err)
	}
	return n
}

func (e *env) notes() []caseaccess.Notification {
	ns, err := e.cs.ListNotifications(e.ctx, 0, 0)
	if err != nil {
		e.t.Fatalf("notifications: %v", err)
	}
	return ns
}

func (e *env) invite(in caseaccess.InviteInput) caseaccess.Invite {
	e.t.Helper()
	if in.CaseRef == "" {
		in.CaseRef = "T20260001"
	}
	if in.Inviter == "" {
		in.Inviter = "pat"
	}
	inv, err := e.svc.Invite(e.ctx, admin, in)
	if err != nil {
		e.t.Fatalf("invite %+v: %v", in, err)
	}
	return inv
}

func (e *env) decide(user string) caseaccess.Decision {
	e.t.Helper()
	d, err := e.svc.Decide(e.ctx, admin, "T20260001", user)
	if err != nil {
		e.t.Fatalf("decide %s: %v", user, err)
	}
	return d
}

func ptr[T any](v T) *T { return &v }

// fakeClock is a controllable clock: timers fire only when Advance passes
// their deadline; every armed timer's deadline is sent on armed.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	armed  chan time.Time
}

type fakeTimer struct {
	clk      *fakeClock
	c        chan time.Time
	deadline time.Time
	stopped  bool
	fired    bool
}

func newFakeClock(t time.Time) *fakeClock {
	return &fakeClock{now: t, armed: make(chan time.Time, 1000)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) caseaccess.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{clk: c, c: make(chan time.Time, 1), deadline: c.now.Add(d)}
	if d <= 0 {
		t.fired = true
		t.c <- c.now
	} else {
		c.timers = append(c.timers, t)
	}
	c.armed <- t.deadline
	return t
}

// Set moves the clock to t, firing due timers.
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	keep := c.timers[:0]
	for _, tm := range c.timers {
		if !tm.stopped && !tm.fired && !tm.deadline.After(t) {
			tm.fired = true
			tm.c <- t
			continue
		}
		if !tm.stopped && !tm.fired {
			keep = append(keep, tm)
		}
	}
	c.timers = keep
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }
func (t *fakeTimer) Stop() bool {
	t.clk.mu.Lock()
	defer t.clk.mu.Unlock()
	was := !t.stopped && !t.fired
	t.stopped = true
	return was
}

type auditEvent = audit.Event

func storeFilter(action string) store.AuditFilter { return store.AuditFilter{Action: action} }
