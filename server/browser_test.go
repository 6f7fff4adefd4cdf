package server

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/internal/testenv"
)

func newChrome(t *testing.T) context.Context { return testenv.Browser(t) }

// step runs browser actions, failing the test with what was being done.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
}

// eval runs a JavaScript expression in the page and returns its value.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("browser: eval %s: %v", expr, err)
	}
	return v
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Text(sel))
	if err != nil {
		t.Fatalf("browser: text of %s: %v", sel, err)
	}
	return v
}

func shot(t *testing.T, ctx context.Context, name string) { testenv.Screenshot(t, ctx, name) }

// signIn opens path, lands on the local issuer's page, types email and
// submits.
func signIn(t *testing.T, ctx context.Context, base, path, email string) {
	t.Helper()
	step(t, ctx, "sign in as "+email,
		chromedp.Navigate(base+path),
		chromedp.WaitVisible("#email"),
		chromedp.SendKeys("#email", email),
		chromedp.Click("#signin"),
	)
}

func TestBrowserSupportReviewsAndApproves(t *testing.T) {
	e := newAdminEnv(t, adminEnvOptions{runItems: 90})
	ctx := newChrome(t)
	signIn(t, ctx, e.url, "/ui/runs", "ops@agency.example")
	step(t, ctx, "runs page", chromedp.WaitVisible("#runs"))
	if me := text(t, ctx, "#me"); !strings.Contains(me, "ops@agency.example") || !strings.Contains(me, "support") {
		t.Fatalf("signed in as %q", me)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll("#chart rect.changes").length`); n != 3 {
		t.Fatalf("chart bars: %d", n)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll("#runs tr.stands").length`); n != 2 {
		t.Fatalf("highlighted runs (failed, held): %d", n)
	}
	shot(t, ctx, "01-runs")

	// Open the LDAP run and filter its changes to failures.
	step(t, ctx, "open run", chromedp.Click(`a[href="/ui/runs/run-ldap"]`), chromedp.WaitVisible("#items"))
	// The unfiltered page has failed items too: wait for its other rows to
	// go (the filtered page loaded) before reading the rows.
	step(t, ctx, "filter", chromedp.SetValue("#action", "failed"), chromedp.Click("#apply-filter"),
		chromedp.WaitNotPresent(`#items tr.item[data-action="created"]`),
		chromedp.WaitVisible(`#items tr.item[data-action="failed"]`))
	actions := eval[[]string](t, ctx, `Array.from(document.querySelectorAll("#items tr.item")).map(r => r.dataset.action)`)
	if len(actions) != 30 {
		t.Fatalf("filtered items: %d", len(actions))
	}
	for _, a := range actions {
		if a != "failed" {
			t.Fatalf("filter shows %q", a)
		}
	}
	if !strings.Contains(eval[string](t, ctx, `location.search`), "action=failed") {
		t.Fatal("filter is not in the URL")
	}
	shot(t, ctx, "02-run-filtered")

	// Review the held plan and approve it.
	step(t, ctx, "held plan", chromedp.Navigate(e.url+"/ui/runs/run-held/plan"), chromedp.WaitVisible("#approve"))
	if h := text(t, ctx, "#hash"); h != "h-123" {
		t.Fatalf("plan hash shown: %q", h)
	}
	shot(t, ctx, "03-held-plan")
	step(t, ctx, "approve", chromedp.Click("#approve"), chromedp.WaitVisible("#status.ok"))
	shot(t, ctx, "04-approved")
	if len(e.approver.calls) != 1 || e.approver.calls[0] != "run-held h-123 admin:oidc:ops@agency.example" {
		t.Fatalf("approver calls: %v", e.approver.calls)
	}
}

func TestBrowserFirmAdminLimits(t *testing.T) {
	e := newAdminEnv(t, adminEnvOptions{})
	ctx := newChrome(t)
	signIn(t, ctx, e.url, "/ui/runs", "alice@firm.example")
	step(t, ctx, "users page", chromedp.WaitVisible("#users"))
	if u := text(t, ctx, "#users"); !strings.Contains(u, "bob") || strings.Contains(u, "carol") {
		t.Fatalf("manager's user list: %q", u)
	}
	shot(t, ctx, "01-users")
	step(t, ctx, "runs refused", chromedp.Navigate(e.url+"/ui/runs"), chromedp.WaitVisible("#error"))
	if m := text(t, ctx, "#error"); !strings.Contains(m, "support staff") {
		t.Fatalf("runs refusal: %q", m)
	}
	step(t, ctx, "other firm refused", chromedp.Navigate(e.url+"/ui/users/"+e.carol.ID), chromedp.WaitVisible("#error"))
	if m := text(t, ctx, "#error"); !strings.Contains(m, "firm 3856") {
		t.Fatalf("other firm refusal: %q", m)
	}
	if body := eval[string](t, ctx, `document.body.innerText`); strings.Contains(body, "carol") {
		t.Fatal("the refusal shows the other firm's user")
	}
	shot(t, ctx, "02-other-firm-refused")

	step(t, ctx, "bob's page", chromedp.Navigate(e.url+"/ui/users/"+e.bob.ID), chromedp.WaitVisible("#grant-form"))
	for _, o := range eval[[]string](t, ctx, `Array.from(document.querySelectorAll("#grant-role option")).map(o => o.value)`) {
		if role, ok := e.srv.adm.cat.Role(o); !ok || role.Admin {
			t.Fatalf("grant form offers %q to a firm admin", o)
		}
	}
	step(t, ctx, "grant", chromedp.SetValue("#grant-role", "ccms/case-management"),
		chromedp.Click(`input[name="offices"][value="0Q731M"]`), chromedp.Click("#grant"),
		chromedp.WaitVisible(`tr.grant[data-role="ccms/case-management"]`))
	shot(t, ctx, "03-granted")
	g, err := e.st.GetGrant(context.Background(), directory.GrantKey{UserID: e.bob.ID, FirmNumber: "3856", Service: "ccms", Role: "case-management"})
	if err != nil || fmt.Sprint(g.Offices) != "[0Q731M]" || g.Provenance[0].Ref != "admin:"+e.alice.ID {
		t.Fatalf("grant from the browser: %+v %v", g, err)
	}
}
