package server

import (
	"context"
	"net"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/auth"
	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/mapping"
	"github.com/dirsyncd/dirsyncd/reconcile"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/webauth"
	"github.com/dirsyncd/dirsyncd/webauth/oidctest"
)

const testSessionKey = "test-session-key-0123456789abcdef0123456789"

// adminEnv is a running server with the admin API and pages, a local
// issuer, and a fixture: firm 3856 (offices 0Q731M, 1A001L) whose manager
// is alice, with staff bob; firm 4000 (office 2B002X) with staff carol;
// chambers 5000; ops@agency.example is support through the groups claim.
type adminEnv struct {
	*env
	issuer   *oidctest.Issuer
	url      string
	approver *fakeApprover
	alice    directory.User
	bob      directory.User
	carol    directory.User
	heldRun  directory.Run
	runItems int
}

// fakeApprover records calls; it accepts the run's own plan hash and marks
// the run ok (the reconciler's own Approve is tested in reconcile and
// through cmd/dirsyncd's adapter).
type fakeApprover struct {
	st    store.Store
	mu    sync.Mutex
	calls []string
}

func (f *fakeApprover) Approve(ctx context.Context, runID, hash, actor string) error {
	f.mu.Lock()
	f.calls = append(f.calls, runID+" "+hash+" "+actor)
	f.mu.Unlock()
	run, err := f.st.GetRun(ctx, runID)
	if err != nil {
		return err
	}
	if run.Status != directory.RunHeld {
		return ErrNotHeld
	}
	if hash != run.PlanHash {
		return ErrPlanMismatch
	}
	return f.st.Update(ctx, audit.Meta{Actor: actor, RunID: runID}, func(ctx context.Context, tx store.Tx) error {
		run.Status = directory.RunOK
		if err := tx.Record(ctx, "run.approve", "run", runID, nil, map[string]string{"planHash": hash}); err != nil {
			return err
		}
		return tx.UpdateRun(ctx, &run)
	})
}

type testExplainer struct {
	st store.Store
	e  *mapping.Engine
}

func (x testExplainer) Explain(ctx context.Context, id string) (mapping.Explanation, error) {
	f, err := reconcile.LoadFacts(ctx, x.st, id)
	if err != nil {
		return mapping.Explanation{}, err
	}
	return x.e.Explain(f), nil
}

type adminEnvOptions struct {
	insecureCookies bool
	runItems        int
	store           store.Store // nil: a fresh SQLite store
	userClaim       string      // "" = email
}

func newAdminEnv(t testing.TB, o adminEnvOptions) *adminEnv {
	t.Helper()
	ctx := context.Background()
	cat, err := mapping.LoadCatalogue("../configs/catalogue.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := mapping.LoadRules("../configs/rules.yaml", cat)
	if err != nil {
		t.Fatal(err)
	}
	eng := mapping.NewEngine(cat, rs)
	v, err := auth.NewVerifier([]config.TokenConfig{
		{Name: "reader", Token: config.NewSecret(tokRead), Scopes: []string{auth.ScopeAdminRead}},
		{Name: "writer", Token: config.NewSecret(tokWrite), Scopes: []string{auth.ScopeAdminWrite}},
		{Name: "entra", Token: config.NewSecret(tokSCIM), Scopes: []string{auth.ScopeSCIM}},
		{Name: "ops", Token: config.NewSecret(tokSupport), Scopes: []string{auth.ScopeSupport}},
	})
	if err != nil {
		t.Fatal(err)
	}
	is := oidctest.New(t, "dirsyncd")
	is.Groups["ops@agency.example"] = []string{"dirsyncd-support"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	if o.userClaim == "" {
		o.userClaim = "email"
	}
	ocfg := config.OIDCConfig{Issuer: is.URL, ClientID: "dirsyncd", UserClaim: o.userClaim, SupportClaim: "groups",
		SupportValues: []string{"dirsyncd-support"}, SessionKey: config.NewSecret(testSessionKey), SessionTTL: time.Hour,
		InsecureCookies: o.insecureCookies}
	core, logs := observer.New(zapcore.DebugLevel)
	st := o.store
	if st == nil {
		st = openStore(t)
	}
	ap := &fakeApprover{st: st}
	srv, err := New(Options{
		Config: config.ServerConfig{Listen: "127.0.0.1:0", MaxBodyBytes: 4096, ShutdownTimeout: 5 * time.Second},
		Store:  st, Verifier: v, Trigger: &fakeTrigger{id: "run-1"}, Logger: zap.New(core),
		Admin: &AdminOptions{Store: st, Catalogue: cat, Status: eng.StatusOf, Explainer: testExplainer{st, eng}, Approver: ap,
			OIDC: webauth.New(ocfg, base+"/ui/callback", nil), OIDCConfig: ocfg},
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.Listener.Close()
	hs.Listener = ln
	hs.Start()
	t.Cleanup(hs.Close)
	e := &adminEnv{env: &env{srv: srv, st: st, logs: logs}, issuer: is, url: base, approver: ap}
	e.seed(t, ctx, o.runItems)
	return e
}

func (e *adminEnv) seed(t testing.TB, ctx context.Context, items int) {
	t.Helper()
	err := e.st.Update(ctx, audit.Meta{Actor: "test"}, func(ctx context.Context, tx store.Tx) error {
		for _, f := range []directory.Firm{
			{Number: "3856", Name: "Smith & Co", Type: directory.FirmLegalServicesProvider, Enabled: true},
			{Number: "4000", Name: "Jones LLP", Type: directory.FirmLegalServicesProvider, Enabled: true},
			{Number: "5000", Name: "Tanfield Chambers", Type: directory.FirmChambers, Enabled: true},
		} {
			if err := tx.PutFirm(ctx, &f); err != nil {
				return err
			}
		}
		for _, o := range []directory.Office{
			{Code: "0Q731M", FirmNumber: "3856", Active: true}, {Code: "1A001L", FirmNumber: "3856", Active: true},
			{Code: "2B002X", FirmNumber: "4000", Active: true},
		} {
			if err := tx.PutOffice(ctx, &o); err != nil {
				return err
			}
		}
		mk := func(name, email, firm string) (directory.User, error) {
			u := directory.User{UserName: name, Email: email, DisplayName: strings.ToUpper(name[:1]) + name[1:], Active: true, FirmNumber: firm}
			if err := tx.CreateUser(ctx, &u); err != nil {
				return u, err
			}
			if err := tx.PutLink(ctx, directory.SourceLink{UserID: u.ID, Source: "scim:entra", Key: "ext-" + name, LastSeenAt: time.Now()}); err != nil {
				return u, err
			}
			return u, tx.PutFirmMembership(ctx, directory.FirmMembership{UserID: u.ID, FirmNumber: firm, Source: "scim:entra"})
		}
		var err error
		if e.alice, err = mk("alice", "alice@firm.example", "3856"); err != nil {
			return err
		}
		if e.bob, err = mk("bob", "bob@firm.example", "3856"); err != nil {
			return err
		}
		if e.carol, err = mk("carol", "carol@jones.example", "4000"); err != nil {
			return err
		}
		if err := tx.PutGrant(ctx, &directory.Grant{UserID: e.alice.ID, FirmNumber: "3856", Service: ManagerService, Role: ManagerRole,
			AllOffices: true, Provenance: []directory.Provenance{{Kind: directory.ProvManual, Ref: "support:seed"}}}); err != nil {
			return err
		}
		if err := tx.PutGrant(ctx, &directory.Grant{UserID: e.carol.ID, FirmNumber: "4000", Service: "ccms", Role: "case-management",
			Offices: []string{"2B002X"}, Provenance: []directory.Provenance{{Kind: directory.ProvRule, Ref: "ccms-staff"}}}); err != nil {
			return err
		}
		// Runs: an ok LDAP run with items, a failed CWA run, a held reconcile run.
		start := time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC)
		fin := start.Add(90 * time.Second)
		ok := directory.Run{ID: "run-ldap", Job: "ldap-full", Trigger: "schedule", Status: directory.RunOK, StartedAt: start, FinishedAt: &fin,
			Counts: map[string]int64{"created": 2, "updated": 1, "failed": 1}}
		failFin := start.Add(time.Hour + 5*time.Second)
		failed := directory.Run{ID: "run-cwa", Job: "cwa", Trigger: "manual", Status: directory.RunFailed, StartedAt: start.Add(time.Hour),
			FinishedAt: &failFin, Error: "cwa: snapshot: service unavailable"}
		e.heldRun = directory.Run{ID: "run-held", Job: "reconcile", Trigger: "schedule", Status: directory.RunHeld, StartedAt: start.Add(2 * time.Hour),
			PlanHash: "h-123", Plan: []byte(`{"changes":[{"action":"revoke","userId":"` + e.carol.ID + `","userName":"carol","firm":"4000","service":"ccms","role":"case-management","before":{"allOffices":false,"offices":["2B002X"],"provenance":[]},"reason":"no rule grants it"}]}`),
			Counts: map[string]int64{"revoke": 1}}
		for _, r := range []*directory.Run{&ok, &failed, &e.heldRun} {
			if err := tx.CreateRun(ctx, r); err != nil {
				return err
			}
		}
		var batch []directory.RunItem
		actions := []string{"created", "updated", "failed"}
		n := max(items, 3)
		for i := 1; i <= n; i++ {
			a := actions[(i-1)%3]
			batch = append(batch, directory.RunItem{RunID: "run-ldap", Seq: int64(i), Action: a, ObjectType: "user",
				ObjectID: "u-" + itoa(i), Reason: a + " by ldap", After: []byte(`{"userName":"u` + itoa(i) + `"}`)})
			if len(batch) == 5000 {
				if err := tx.AddRunItems(ctx, batch); err != nil {
					return err
				}
				batch = batch[:0]
			}
		}
		e.runItems = n
		return tx.AddRunItems(ctx, batch)
	})
	if err != nil {
		t.Fatalf("seed: %v", err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// token mints an OIDC bearer token for email.
func (e *adminEnv) token(email string) string { return e.issuer.Token(map[string]any{"email": email}) }

func (e *adminEnv) call(t *testing.T, method, path, token, body string) resp {
	t.Helper()
	return e.do(t, method, path, token, body, "Content-Type", "application/json")
}
