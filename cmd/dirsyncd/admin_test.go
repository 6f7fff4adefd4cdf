package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/internal/testenv"
	"github.com/dirsyncd/dirsyncd/server"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/webauth/oidctest"
)

// heldRun seeds alice in a group, reconciles (two grants), removes her
// from the group and reconciles again: two revokes exceed the guard, so
// the run is held. It returns the run id and plan hash.
func heldRun(t *testing.T, cfg, db string) (runID, hash string) {
	t.Helper()
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
		u := &directory.User{UserName: "alice@smith.example", Email: "alice@smith.example", Active: true, FirmNumber: "3856"}
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
	if r := run(t, "-c", cfg, "reconcile"); r.code != 0 || !strings.Contains(r.stdout, "2 applied") {
		t.Fatalf("reconcile: %+v", r)
	}
	st = openTestStore(t, db)
	err = st.Update(ctx, audit.Meta{Actor: "test"}, func(ctx context.Context, tx store.Tx) error {
		return tx.RemoveMembers(ctx, group, []string{alice})
	})
	_ = st.Close()
	if err != nil {
		t.Fatal(err)
	}
	var held struct{ RunID, PlanHash, Status string }
	r := run(t, "-c", cfg, "reconcile", "--json")
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &held) != nil || held.Status != "held" {
		t.Fatalf("held run: %+v", r)
	}
	return held.RunID, held.PlanHash
}

func grantCount(t *testing.T, db string) int {
	t.Helper()
	st := openTestStore(t, db)
	defer st.Close()
	gs, err := st.ListGrants(context.Background(), store.GrantQuery{})
	if err != nil {
		t.Fatal(err)
	}
	return len(gs)
}

// TestApproverAdapter: the admin API's approve is the reconciler's
// Approve (as `dirsyncd runs approve`), with its refusals mapped.
func TestApproverAdapter(t *testing.T) {
	cfg, db := writeConfig(t, "reconcile: {minRevokes: 1, revokePercent: 0}\n")
	id, hash := heldRun(t, cfg, db)
	app := newApp(io.Discard, io.Discard)
	if err := app.loadConfig(cfg); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := app.open(ctx); err != nil {
		t.Fatal(err)
	}
	defer app.Store.Close()
	opts, err := app.adminOptions()
	if err != nil {
		t.Fatal(err)
	}
	if err := opts.Approver.Approve(ctx, id, strings.Repeat("0", 64), "admin:x"); !errors.Is(err, server.ErrPlanMismatch) {
		t.Fatalf("wrong hash: %v", err)
	}
	if n := grantCount(t, db); n != 2 {
		t.Fatalf("a refused approval applied something: %d grants", n)
	}
	if err := opts.Approver.Approve(ctx, id, hash, "admin:x"); err != nil {
		t.Fatal(err)
	}
	if n := grantCount(t, db); n != 0 {
		t.Fatalf("after approve: %d grants", n)
	}
	if err := opts.Approver.Approve(ctx, id, hash, "admin:x"); !errors.Is(err, server.ErrNotHeld) {
		t.Fatalf("second approve: %v", err)
	}
	x, err := opts.Explainer.Explain(ctx, mustUserID(t, app, "alice@smith.example"))
	if err != nil || x.UserName != "alice@smith.example" {
		t.Fatalf("explain: %+v %v", x, err)
	}
}

func mustUserID(t *testing.T, app *App, email string) string {
	u, err := app.Store.GetUserByEmail(context.Background(), email)
	if err != nil {
		t.Fatal(err)
	}
	return u.ID
}

// TestServeAdminEndToEnd runs the daemon with OIDC against a local issuer:
// the API answers OIDC bearer tokens, and a support user signs in with
// headless Chromium, reviews the held reconcile run and approves it; the
// real reconciler applies the plan.
func TestServeAdminEndToEnd(t *testing.T) {
	is := oidctest.New(t, "dirsyncd")
	is.Groups["ops@agency.example"] = []string{"dirsyncd-support"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	extra := fmt.Sprintf(`reconcile: {minRevokes: 1, revokePercent: 0}
oidc:
  issuer: %s
  clientID: dirsyncd
  supportValues: [dirsyncd-support]
  sessionKey: %s
`, is.URL, strings.Repeat("s", 40))
	cfg, db := writeConfig(t, extra)
	id, hash := heldRun(t, cfg, db)
	// serve on the chosen port, with the public URL the issuer redirects to.
	doc := strings.Replace(readFile(t, cfg), `server: {listen: "127.0.0.1:0", shutdownTimeout: 5s}`,
		fmt.Sprintf(`server: {listen: "%s", publicURL: "http://%s", shutdownTimeout: 5s}`, addr, addr), 1)
	writeFile(t, cfg, doc)

	addrc := make(chan net.Addr, 1)
	testServeReady = func(a net.Addr) { addrc <- a }
	t.Cleanup(func() { testServeReady = nil })
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() { done <- execute(ctx, []string{"serve", "--config", cfg}, &out, &errb) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-addrc:
	case code := <-done:
		t.Fatalf("serve exited %d: %s", code, errb.String())
	}
	base := "http://" + addr

	call := func(method, path, tok, body string) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	support := is.Token(map[string]any{"email": "ops@agency.example"})
	if code, body := call("GET", "/api/v1/runs/"+id+"/plan", support, ""); code != 200 || !strings.Contains(body, hash) {
		t.Fatalf("plan over OIDC: %d %s", code, body)
	}
	alice := is.Token(map[string]any{"email": "alice@smith.example"})
	if code, _ := call("POST", "/api/v1/runs/"+id+"/approve", alice, `{"planHash":"`+hash+`"}`); code != 403 {
		t.Fatalf("non-support approve: %d", code)
	}
	if code, body := call("POST", "/api/v1/runs/"+id+"/approve", support, `{"planHash":"`+strings.Repeat("0", 64)+`"}`); code != 409 {
		t.Fatalf("wrong hash: %d %s", code, body)
	}

	b := testenv.Browser(t)
	err = chromedp.Do(b,
		chromedp.Navigate(base+"/ui/runs/"+id+"/plan"),
		chromedp.WaitVisible("#email"),
		chromedp.SendKeys("#email", "ops@agency.example"),
		chromedp.Click("#signin"),
		chromedp.WaitVisible("#approve"),
	)
	if err != nil {
		t.Fatalf("browser sign-in: %v", err)
	}
	testenv.Screenshot(t, b, "01-held-plan")
	if err := chromedp.Do(b, chromedp.Click("#approve"), chromedp.WaitVisible("#status.ok")); err != nil {
		t.Fatalf("browser approve: %v", err)
	}
	testenv.Screenshot(t, b, "02-approved")
	if n := grantCount(t, db); n != 0 {
		t.Fatalf("the approved plan was not applied: %d grants", n)
	}
	n := 0
	st := openTestStore(t, db)
	defer st.Close()
	_ = st.Audit(context.Background(), store.AuditFilter{Action: "run.approve"}, func(e audit.Event) error {
		if e.Actor == "admin:oidc:ops@agency.example" && e.ObjectID == id {
			n++
		}
		return nil
	})
	if n != 1 {
		t.Fatalf("approval events by the signed-in user: %d", n)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, doc string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
}
