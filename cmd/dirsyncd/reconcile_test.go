package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/mapping"
	"github.com/dirsyncd/dirsyncd/reconcile"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/store/sqlite"
)

func TestRulesCommands(t *testing.T) {
	cfg, _ := writeConfig(t, "")
	if r := run(t, "-c", cfg, "rules", "check"); r.code != 0 || !strings.Contains(r.stdout, "rules OK: 5 service(s), 17 role(s)") {
		t.Fatalf("rules check: %+v", r)
	}
	r := run(t, "-c", cfg, "rules", "test", "mapping/testdata/fixture.yaml")
	if r.code != 0 || !strings.Contains(r.stdout, "alice@smith.example: Complete") || !strings.Contains(r.stdout, "dave@smith.example: Incomplete") {
		t.Fatalf("rules test: %+v", r)
	}
	bad := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(bad, []byte("rules:\n  - name: x\n    grants: [{role: ccms/firm-administrator}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg2 := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(cfg2, append(doc, []byte("\nmapping: {rules: "+bad+"}\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := run(t, "-c", cfg2, "rules", "check"); r.code != exitConfig || !strings.Contains(r.stdout, "admin: true") {
		t.Fatalf("rules check of an admin grant without admin: true: %+v", r)
	}
}

func TestReconcileExplainApproveCommands(t *testing.T) {
	cfg, db := writeConfig(t, "reconcile: {minRevokes: 1, revokePercent: 0}\n")
	if r := run(t, "-c", cfg, "migrate"); r.code != 0 {
		t.Fatalf("migrate: %+v", r)
	}
	st := openTestStore(t, db)
	ctx := context.Background()
	var alice, group string
	err := st.Update(ctx, audit.Meta{Actor: "test"}, func(ctx context.Context, tx store.Tx) error {
		if err := tx.PutFirm(ctx, &directory.Firm{Number: "3856", Name: "Smith & Co", Type: directory.FirmLegalServicesProvider, Enabled: true}); err != nil {
			return err
		}
		u := &directory.User{UserName: "alice@smith.example", Active: true, FirmNumber: "3856"}
		if err := tx.CreateUser(ctx, u); err != nil {
			return err
		}
		g := &directory.Group{Source: "scim:entra", DisplayName: "LAA Crime"}
		if err := tx.CreateGroup(ctx, g); err != nil {
			return err
		}
		alice, group = u.ID, g.ID
		return tx.AddMembers(ctx, g.ID, []string{u.ID})
	})
	_ = st.Close()
	if err != nil {
		t.Fatal(err)
	}
	grants := func() int {
		st := openTestStore(t, db)
		defer st.Close()
		gs, err := st.ListGrants(ctx, store.GrantQuery{})
		if err != nil {
			t.Fatal(err)
		}
		return len(gs)
	}

	var dry struct {
		Plan struct{ Changes []json.RawMessage }
	}
	r := run(t, "-c", cfg, "reconcile", "--dry-run", "--json")
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &dry) != nil || len(dry.Plan.Changes) != 2 || grants() != 0 {
		t.Fatalf("dry run: %+v", r)
	}
	if r := run(t, "-c", cfg, "reconcile"); r.code != 0 || !strings.Contains(r.stdout, "2 applied") || grants() != 2 {
		t.Fatalf("reconcile: %+v", r)
	}
	if r := run(t, "-c", cfg, "explain", "alice@smith.example"); r.code != 0 || !strings.Contains(r.stdout, "+ crime-apply/access: held") {
		t.Fatalf("explain: %+v", r)
	}

	// alice leaves: two revokes > max(1, 0%): held, approved by hash
	st = openTestStore(t, db)
	err = st.Update(ctx, audit.Meta{Actor: "test"}, func(ctx context.Context, tx store.Tx) error {
		return tx.RemoveMembers(ctx, group, []string{alice})
	})
	_ = st.Close()
	if err != nil {
		t.Fatal(err)
	}
	var held struct {
		RunID, PlanHash, Status string
	}
	r = run(t, "-c", cfg, "reconcile", "--json")
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &held) != nil || held.Status != "held" || grants() != 2 {
		t.Fatalf("held run: %+v", r)
	}
	if r := run(t, "-c", cfg, "runs", "approve", held.RunID, "--plan-hash", strings.Repeat("0", 64)); r.code == 0 || grants() != 2 {
		t.Fatalf("approve with a wrong hash: %+v", r)
	}
	if r := run(t, "-c", cfg, "runs", "approve", held.RunID, "--plan-hash", held.PlanHash); r.code != 0 || grants() != 0 {
		t.Fatalf("approve: %+v", r)
	}
}

func TestExplainHandler(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "d.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var id string
	if err := st.Update(ctx, audit.Meta{Actor: "test"}, func(ctx context.Context, tx store.Tx) error {
		if err := tx.PutFirm(ctx, &directory.Firm{Number: "3856", Type: directory.FirmLegalServicesProvider, Enabled: true}); err != nil {
			return err
		}
		u := &directory.User{UserName: "erin@smith.example", Active: true, FirmNumber: "3856"}
		if err := tx.CreateUser(ctx, u); err != nil {
			return err
		}
		id = u.ID
		g := &directory.Group{Source: "scim:entra", DisplayName: "LAA Crime"}
		if err := tx.CreateGroup(ctx, g); err != nil {
			return err
		}
		return tx.AddMembers(ctx, g.ID, []string{u.ID})
	}); err != nil {
		t.Fatal(err)
	}
	cat, err := mapping.LoadCatalogue("../../configs/catalogue.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := mapping.LoadRules("../../configs/rules.yaml", cat)
	if err != nil {
		t.Fatal(err)
	}
	h := explainHandler(st, mapping.NewEngine(cat, rs))
	req := httptest.NewRequest("GET", "/api/v1/users/"+id+"/explain", nil)
	req.SetPathValue("id", id)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var x mapping.Explanation
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &x) != nil || x.UserName != "erin@smith.example" || x.Status != mapping.StatusComplete {
		t.Fatalf("explain %d %s", rec.Code, rec.Body.String())
	}
	req = httptest.NewRequest("GET", "/api/v1/users/00000000-0000-0000-0000-000000000000/explain", nil)
	req.SetPathValue("id", "00000000-0000-0000-0000-000000000000")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 404 {
		t.Fatalf("unknown user: %d", rec.Code)
	}
}

// TestOutboxResendCommand: a user whose CCMS message was refused is resent
// by `dirsyncd outbox resend --failed` with their current roles, and the
// command exits 1 while the endpoint still refuses.
func TestOutboxResendCommand(t *testing.T) {
	var mu sync.Mutex
	status := http.StatusBadRequest
	var got []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		_ = json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		defer mu.Unlock()
		if status == http.StatusOK {
			got = append(got, m)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	setStatus := func(s int) { mu.Lock(); status = s; mu.Unlock() }

	cfg, db := writeConfig(t, "reconcile: {outbox: {endpoint: \""+srv.URL+"\", maxAttempts: 1}}\n")
	if r := run(t, "-c", cfg, "migrate"); r.code != 0 {
		t.Fatalf("migrate: %+v", r)
	}
	st := openTestStore(t, db)
	ctx := context.Background()
	var alice string
	err := st.Update(ctx, audit.Meta{Actor: "test"}, func(ctx context.Context, tx store.Tx) error {
		if err := tx.PutFirm(ctx, &directory.Firm{Number: "3856", Name: "Smith & Co", Type: directory.FirmLegalServicesProvider, Enabled: true}); err != nil {
			return err
		}
		u := &directory.User{UserName: "alice@smith.example", Email: "alice@smith.example", GivenName: "Alice", FamilyName: "Smith", Active: true, FirmNumber: "3856"}
		if err := tx.CreateUser(ctx, u); err != nil {
			return err
		}
		g := &directory.Group{Source: "scim:entra", DisplayName: "LAA CCMS Supervisors"}
		if err := tx.CreateGroup(ctx, g); err != nil {
			return err
		}
		alice = u.ID
		return tx.AddMembers(ctx, g.ID, []string{u.ID})
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	if r := run(t, "-c", cfg, "reconcile"); r.code != 0 {
		t.Fatalf("reconcile: %+v", r)
	}
	// the daemon's delivery: the endpoint refuses, alice is flagged failed
	st = openTestStore(t, db)
	cat, err := mapping.LoadCatalogue("configs/catalogue.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ob := reconcile.NewOutbox(st, cat, reconcile.OutboxOptions{Endpoint: srv.URL, MaxAttempts: 1})
	if sent, failed, err := ob.Deliver(ctx); err != nil || sent != 0 || failed != 1 {
		t.Fatalf("deliver: %d sent, %d failed, %v", sent, failed, err)
	}
	_ = st.Close()

	if r := run(t, "-c", cfg, "outbox", "resend"); r.code != exitConfig {
		t.Fatalf("resend without --failed: %+v", r)
	}
	if r := run(t, "-c", cfg, "outbox", "resend", "--failed"); r.code != exitFailure || !strings.Contains(r.stdout, "0 user(s), 1 still failing") {
		t.Fatalf("resend while refused: %+v", r)
	}
	setStatus(http.StatusOK)
	if r := run(t, "-c", cfg, "outbox", "resend", "--failed"); r.code != 0 || !strings.Contains(r.stdout, "resent 1 user(s), 0 still failing") {
		t.Fatalf("resend: %+v", r)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0]["userName"] != "alice@smith.example" || got[0]["vendorNumber"] != "3856" ||
		!strings.Contains(fmt.Sprint(got[0]["responsibilityKey"]), "XXCCMS_CASE_SUPERVISOR") {
		t.Fatalf("messages received: %v", got)
	}
	st = openTestStore(t, db)
	defer st.Close()
	ob = reconcile.NewOutbox(st, cat, reconcile.OutboxOptions{Endpoint: srv.URL, MaxAttempts: 1})
	if ok, err := ob.LastDeliveryOK(ctx, alice); err != nil || !ok {
		t.Fatalf("last delivery flag after resend: %v %v", ok, err)
	}
	if r := run(t, "-c", cfg, "outbox", "resend", "--failed"); r.code != 0 || !strings.Contains(r.stdout, "resent 0 user(s)") {
		t.Fatalf("second resend: %+v", r)
	}
}

// TestServeExplainEndpoint: GET /api/v1/users/{id}/explain is mounted by
// serve, refuses a request without a token and answers with one.
func TestServeExplainEndpoint(t *testing.T) {
	cfg, db := writeConfig(t, "")
	if r := run(t, "-c", cfg, "migrate"); r.code != 0 {
		t.Fatalf("migrate: %+v", r)
	}
	st := openTestStore(t, db)
	var id string
	err := st.Update(context.Background(), audit.Meta{Actor: "test"}, func(ctx context.Context, tx store.Tx) error {
		if err := tx.PutFirm(ctx, &directory.Firm{Number: "3856", Type: directory.FirmLegalServicesProvider, Enabled: true}); err != nil {
			return err
		}
		u := &directory.User{UserName: "hana@smith.example", Active: true, FirmNumber: "3856"}
		if err := tx.CreateUser(ctx, u); err != nil {
			return err
		}
		id = u.ID
		return nil
	})
	_ = st.Close()
	if err != nil {
		t.Fatal(err)
	}
	addrc := make(chan net.Addr, 1)
	testServeReady = func(a net.Addr) { addrc <- a }
	t.Cleanup(func() { testServeReady = nil })
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() { done <- execute(ctx, []string{"serve", "--config", cfg}, &out, &errb) }()
	t.Cleanup(func() { cancel(); <-done })
	var addr net.Addr
	select {
	case addr = <-addrc:
	case code := <-done:
		done <- code
		t.Fatalf("serve exited %d: %s", code, errb.String())
	}
	banner := out.String()
	i := strings.Index(banner, "Bearer ")
	if i < 0 {
		t.Fatalf("no dev banner: %q", banner)
	}
	token := strings.TrimSuffix(strings.Fields(banner[i+len("Bearer "):])[0], "'")
	get := func(tok string) (int, []byte) {
		req, _ := http.NewRequest("GET", "http://"+addr.String()+"/api/v1/users/"+id+"/explain", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(res.Body)
		return res.StatusCode, b.Bytes()
	}
	if code, _ := get(""); code != http.StatusUnauthorized {
		t.Fatalf("explain without a token: %d", code)
	}
	code, body := get(token)
	var x mapping.Explanation
	if code != 200 || json.Unmarshal(body, &x) != nil || x.UserID != id || x.Status != mapping.StatusIncomplete {
		t.Fatalf("explain: %d %s", code, body)
	}
}

// TestScheduledReconcileJob: a scheduler job of kind reconcile runs the full
// reconcile (here through `dirsyncd run JOB`, as the cron does) and records
// its counts on the run.
func TestScheduledReconcileJob(t *testing.T) {
	cfg, db := writeConfig(t, "    - {name: full-reconcile, kind: reconcile, schedule: \"@every 1h\"}\n")
	if r := run(t, "-c", cfg, "migrate"); r.code != 0 {
		t.Fatalf("migrate: %+v", r)
	}
	st := openTestStore(t, db)
	ctx := context.Background()
	err := st.Update(ctx, audit.Meta{Actor: "test"}, func(ctx context.Context, tx store.Tx) error {
		if err := tx.PutFirm(ctx, &directory.Firm{Number: "3856", Type: directory.FirmLegalServicesProvider, Enabled: true}); err != nil {
			return err
		}
		u := &directory.User{UserName: "jo@smith.example", Active: true, FirmNumber: "3856"}
		if err := tx.CreateUser(ctx, u); err != nil {
			return err
		}
		g := &directory.Group{Source: "scim:entra", DisplayName: "LAA Crime"}
		if err := tx.CreateGroup(ctx, g); err != nil {
			return err
		}
		return tx.AddMembers(ctx, g.ID, []string{u.ID})
	})
	_ = st.Close()
	if err != nil {
		t.Fatal(err)
	}
	if r := run(t, "-c", cfg, "run", "full-reconcile"); r.code != 0 {
		t.Fatalf("run full-reconcile: %+v", r)
	}
	st = openTestStore(t, db)
	defer st.Close()
	runs, err := st.ListRuns(ctx, store.RunQuery{Job: "full-reconcile", Limit: 5})
	if err != nil || len(runs) != 1 || runs[0].Status != directory.RunOK || runs[0].Counts["grant"] != 2 || runs[0].Counts["applied"] != 2 {
		t.Fatalf("runs %+v %v", runs, err)
	}
	gs, err := st.ListGrants(ctx, store.GrantQuery{})
	if err != nil || len(gs) != 2 {
		t.Fatalf("grants %d %v", len(gs), err)
	}
	var events int
	_ = st.Audit(ctx, store.AuditFilter{Actor: audit.ActorReconcile}, func(e audit.Event) error {
		if e.ObjectType == "grant" && e.RunID == runs[0].ID {
			events++
		}
		return nil
	})
	if events != 2 {
		t.Errorf("%d grant events carry the scheduled run's id, want 2", events)
	}
}
