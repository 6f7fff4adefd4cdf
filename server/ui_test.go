package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/auth"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/webauth"
)

// browser is a Go HTTP client with a cookie jar, playing the browser.
type browser struct {
	t *testing.T
	c *http.Client
	e *adminEnv
}

func (e *adminEnv) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, c: &http.Client{Jar: jar}, e: e}
}

func (b *browser) get(path string) (*http.Response, string) {
	b.t.Helper()
	u := path
	if strings.HasPrefix(path, "/") {
		u = b.e.url + path
	}
	resp, err := b.c.Get(u)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func (b *browser) post(path string, form url.Values, hdr ...string) (*http.Response, string) {
	b.t.Helper()
	req, _ := http.NewRequest("POST", b.e.url+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// signIn opens path, is sent to the local issuer, types email there and
// comes back signed in.
func (b *browser) signIn(path, email string) (*http.Response, string) {
	b.t.Helper()
	resp, body := b.get(path)
	if !strings.HasPrefix(resp.Request.URL.String(), b.e.issuer.URL+"/authorize") || !strings.Contains(body, "Local issuer") {
		b.t.Fatalf("not sent to the issuer: %s", resp.Request.URL)
	}
	q := resp.Request.URL.Query()
	form := url.Values{"email": {email}, "state": {q.Get("state")}, "nonce": {q.Get("nonce")},
		"code_challenge": {q.Get("code_challenge")}, "redirect_uri": {q.Get("redirect_uri")}}
	r2, err := b.c.PostForm(b.e.issuer.URL+"/authorize", form)
	if err != nil {
		b.t.Fatal(err)
	}
	defer r2.Body.Close()
	out, _ := io.ReadAll(r2.Body)
	return r2, string(out)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in page")
	}
	return m[1]
}

func TestUISupportPages(t *testing.T) {
	e := newAdminEnv(t, adminEnvOptions{insecureCookies: true, runItems: 120})
	b := e.browser(t)
	resp, body := b.signIn("/ui/runs", "ops@agency.example")
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/ui/runs" {
		t.Fatalf("after sign-in: %d %s", resp.StatusCode, resp.Request.URL)
	}
	h := resp.Header
	if !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") || h.Get("Cache-Control") != "no-store" ||
		h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("security headers: %v", h)
	}
	for _, want := range []string{`href="/ui/runs/run-held/plan"`, `class="stands" data-status="failed"`, `class="stands" data-status="held"`,
		`<svg id="chart"`, `class="changes"`, "cwa: snapshot: service unavailable", "ldap-full", "1m30s"} {
		if !strings.Contains(body, want) {
			t.Fatalf("runs page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script") {
		t.Fatal("pages must work without JavaScript")
	}
	// The login is audited with the signed-in identity as actor.
	n := 0
	_ = e.st.Audit(context.Background(), store.AuditFilter{Action: "user.login"}, func(ev audit.Event) error {
		if ev.Actor == "admin:oidc:ops@agency.example" {
			n++
		}
		return nil
	})
	if n != 1 {
		t.Fatalf("login events: %d", n)
	}
	// Run detail: paged, filtered by action, exported.
	_, body = b.get("/ui/runs/run-ldap")
	if c := strings.Count(body, `class="item"`); c != defaultLimit || !strings.Contains(body, `id="next"`) {
		t.Fatalf("first page shows %d items", c)
	}
	_, body = b.get("/ui/runs/run-ldap?action=failed")
	if c := strings.Count(body, `class="item" data-action="failed"`); c != 40 || strings.Contains(body, `data-action="created"`) {
		t.Fatalf("filtered page: %d failed items", c)
	}
	if !strings.Contains(body, `href="/ui/runs/run-ldap?format=csv&amp;action=failed"`) {
		t.Fatal("the export links do not keep the filter")
	}
	resp, body = b.get("/ui/runs/run-ldap?action=failed&format=csv")
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") || len(lines) != 41 || lines[0] != "seq,action,objectType,objectId,reason,before,after" {
		t.Fatalf("csv export: %d lines, %v", len(lines), resp.Header)
	}
	_, body = b.get("/ui/runs/run-ldap?format=json")
	var items []map[string]any
	if err := json.Unmarshal([]byte(body), &items); err != nil || len(items) != 120 {
		t.Fatalf("json export: %d items, %v", len(items), err)
	}
	// Held plan and approve: CSRF required.
	_, body = b.get("/ui/runs/run-held/plan")
	if !strings.Contains(body, `id="approve"`) || !strings.Contains(body, "no rule grants it") || !strings.Contains(body, "<td>2B002X → </td>") {
		t.Fatalf("plan page: %s", body)
	}
	tok := csrfOf(t, body)
	if resp, _ := b.post("/ui/runs/run-held/approve", url.Values{"planHash": {"h-123"}}); resp.StatusCode != 403 {
		t.Fatalf("approve without CSRF: %d", resp.StatusCode)
	}
	if resp, _ := b.post("/ui/runs/run-held/approve", url.Values{"planHash": {"h-123"}, "csrf": {strings.Repeat("0", 64)}}); resp.StatusCode != 403 {
		t.Fatalf("approve with a wrong CSRF token: %d", resp.StatusCode)
	}
	if resp, _ := b.post("/ui/runs/run-held/approve", url.Values{"planHash": {"h-123"}, "csrf": {tok}}, "Origin", "https://evil.example"); resp.StatusCode != 403 {
		t.Fatalf("cross-origin approve: %d", resp.StatusCode)
	}
	if len(e.approver.calls) != 0 {
		t.Fatalf("refused posts reached the approver: %v", e.approver.calls)
	}
	resp, body = b.post("/ui/runs/run-held/approve", url.Values{"planHash": {"h-123"}, "csrf": {tok}})
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/ui/runs/run-held" || !strings.Contains(body, `id="status" class="ok"`) {
		t.Fatalf("approve: %d %s", resp.StatusCode, resp.Request.URL)
	}
	// Audit search and CSV.
	_, body = b.get("/ui/audit?action=run.approve")
	if !strings.Contains(body, "admin:oidc:ops@agency.example") {
		t.Fatalf("audit page lacks the approval")
	}
	resp, body = b.get("/ui/audit?format=csv&action=run.approve")
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") || !strings.Contains(body, "run.approve") {
		t.Fatalf("audit csv: %s", body)
	}
	// Sign out ends the session.
	_, body = b.get("/ui/users")
	b.post("/ui/logout", url.Values{"csrf": {csrfOf(t, body)}})
	if resp, _ := b.get("/ui/runs"); !strings.HasPrefix(resp.Request.URL.String(), e.issuer.URL) {
		t.Fatalf("still signed in after logout: %s", resp.Request.URL)
	}
}

func TestUIFirmAdminLimits(t *testing.T) {
	e := newAdminEnv(t, adminEnvOptions{insecureCookies: true})
	b := e.browser(t)
	resp, body := b.signIn("/ui/runs", "alice@firm.example")
	if resp.Request.URL.Path != "/ui/users" || !strings.Contains(body, "bob") || strings.Contains(body, "carol") {
		t.Fatalf("manager lands on %s: %s", resp.Request.URL, body)
	}
	if resp, _ := b.get("/ui/runs"); resp.StatusCode != 403 {
		t.Fatalf("manager runs page: %d", resp.StatusCode)
	}
	if resp, _ := b.get("/ui/"); resp.Request.URL.Path != "/ui/users" {
		t.Fatalf("/ui/ sends a firm admin to %s", resp.Request.URL.Path)
	}
	if resp, body := b.get("/ui/users/" + e.carol.ID); resp.StatusCode != 403 || strings.Contains(body, "carol@") {
		t.Fatalf("other firm's user page: %d", resp.StatusCode)
	}
	if resp, _ := b.get("/ui/users?firm=4000"); resp.StatusCode != 403 {
		t.Fatalf("other firm search: %d", resp.StatusCode)
	}
	resp, body = b.get("/ui/users/" + e.bob.ID)
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("user page: %d", resp.StatusCode)
	}
	if strings.Contains(body, `value="ccms/firm-administrator"`) || !strings.Contains(body, `value="ccms/case-management"`) {
		t.Fatal("the grant form must offer service roles and no admin role to a firm admin")
	}
	tok := csrfOf(t, body)
	// A forged form asking for an admin role is refused by the server too.
	resp, _ = b.post("/ui/users/"+e.bob.ID+"/grants", url.Values{"csrf": {tok}, "firmNumber": {"3856"}, "role": {"ccms/firm-administrator"}})
	if resp.StatusCode != 403 {
		t.Fatalf("admin role via form: %d", resp.StatusCode)
	}
	resp, body = b.post("/ui/users/"+e.bob.ID+"/grants", url.Values{"csrf": {tok}, "firmNumber": {"3856"}, "role": {"ccms/case-management"}, "offices": {"2B002X"}})
	if resp.StatusCode != 400 || !strings.Contains(body, "does not belong to firm 3856") {
		t.Fatalf("foreign office via form: %d", resp.StatusCode)
	}
	resp, body = b.post("/ui/users/"+e.bob.ID+"/grants", url.Values{"csrf": {tok}, "firmNumber": {"3856"}, "role": {"ccms/case-management"}, "offices": {"0Q731M"}})
	if resp.StatusCode != 200 || !strings.Contains(body, `data-role="ccms/case-management"`) || !strings.Contains(body, "<td>alice (admin:"+e.alice.ID+")</td>") {
		t.Fatalf("grant via form: %d", resp.StatusCode)
	}
	resp, _ = b.post("/ui/users/"+e.bob.ID+"/revoke", url.Values{"firmNumber": {"3856"}, "service": {"ccms"}, "role": {"case-management"}})
	if resp.StatusCode != 403 {
		t.Fatalf("revoke without CSRF: %d", resp.StatusCode)
	}
	// A sign-in callback with a forged state is refused.
	if resp, _ := b.get("/ui/callback?code=x&state=forged"); resp.StatusCode != 400 {
		t.Fatalf("forged state: %d", resp.StatusCode)
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{"/ui/runs/x": "/ui/runs/x", "//evil.example/ui/": "/ui/runs", "https://evil.example": "/ui/runs",
		"/ui/login": "/ui/runs", "/api/v1/users": "/ui/runs", "": "/ui/runs"} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRecentAuditNewestFirst(t *testing.T) {
	e := newAdminEnv(t, adminEnvOptions{})
	ctx := context.Background()
	for i := range 7 {
		err := e.st.Update(ctx, audit.Meta{Actor: "test"}, func(ctx context.Context, tx store.Tx) error {
			return tx.Record(ctx, "note", "user", e.bob.ID, nil, map[string]int{"i": i})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	got, err := e.srv.recentAudit(r, &caller{p: auth.Principal{Kind: "token", Scopes: []string{auth.ScopeSupport}}}, e.bob.ID, 3)
	if err != nil || len(got) != 3 {
		t.Fatalf("%v %v", got, err)
	}
	for i, want := range []string{`{"i":6}`, `{"i":5}`, `{"i":4}`} {
		if string(got[i].After) != want {
			t.Fatalf("event %d = %s, want %s", i, got[i].After, want)
		}
	}
}

func TestUIRevokedManagerLosesAccessAtOnce(t *testing.T) {
	e := newAdminEnv(t, adminEnvOptions{insecureCookies: true})
	b := e.browser(t)
	if resp, _ := b.signIn("/ui/users", "alice@firm.example"); resp.StatusCode != 200 {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	support := e.token("ops@agency.example")
	if r := e.call(t, "DELETE", "/api/v1/users/"+e.alice.ID+"/grants/3856/"+ManagerService+"/"+ManagerRole, support, ""); r.code != 204 {
		t.Fatalf("revoke manager role: %d %s", r.code, r.body)
	}
	if resp, body := b.get("/ui/users/" + e.bob.ID); resp.StatusCode != 403 || strings.Contains(body, "bob@firm.example") {
		t.Fatalf("a revoked manager still sees staff: %d", resp.StatusCode)
	}
	// A deactivated user's bearer tokens stop working too.
	err := e.st.Update(context.Background(), audit.Meta{Actor: "test"}, func(ctx context.Context, tx store.Tx) error {
		u, err := tx.GetUser(ctx, e.bob.ID)
		if err != nil {
			return err
		}
		u.Active = false
		return tx.UpdateUser(ctx, &u, 0)
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := e.call(t, "GET", "/api/v1/me", e.token("bob@firm.example"), ""); r.code != 403 || errorCode(t, r.body) != "account_inactive" {
		t.Fatalf("inactive user: %d %s", r.code, r.body)
	}
}

// failingUpdates fails every write once fail is set, with an error
// holding details of the database that must reach no page.
type failingUpdates struct {
	store.Store
	fail atomic.Bool
}

func (f *failingUpdates) Update(ctx context.Context, m audit.Meta, fn func(ctx context.Context, tx store.Tx) error) error {
	if f.fail.Load() {
		return errors.New("store: put grant: dial tcp 10.9.8.7:5432: db-internal-detail")
	}
	return f.Store.Update(ctx, m, fn)
}

func TestUIStoreErrorShowsNoDetail(t *testing.T) {
	st := &failingUpdates{Store: openStore(t)}
	e := newAdminEnv(t, adminEnvOptions{insecureCookies: true, store: st})
	b := e.browser(t)
	_, body := b.signIn("/ui/users/"+e.bob.ID, "alice@firm.example")
	tok := csrfOf(t, body)
	st.fail.Store(true)
	resp, body := b.post("/ui/users/"+e.bob.ID+"/grants", url.Values{"csrf": {tok}, "firmNumber": {"3856"}, "role": {"ccms/case-management"}})
	if resp.StatusCode != 500 || strings.Contains(body, "db-internal-detail") || strings.Contains(body, "10.9.8.7") ||
		!strings.Contains(body, resp.Header.Get(HeaderRequestID)) {
		t.Fatalf("store error on the grant page: %d %s", resp.StatusCode, body)
	}
	resp, body = b.post("/ui/users/"+e.bob.ID+"/revoke", url.Values{"csrf": {tok}, "firmNumber": {"3856"}, "service": {"ccms"}, "role": {"case-management"}})
	if resp.StatusCode != 500 || strings.Contains(body, "db-internal-detail") {
		t.Fatalf("store error on the revoke page: %d %s", resp.StatusCode, body)
	}
	if e.logs.FilterMessage("change grant").Len() != 2 {
		t.Fatalf("the store errors are not logged: %d", e.logs.FilterMessage("change grant").Len())
	}
}

// TestUISessionCookies walks the sign-in by hand (no cookie jar, so the
// Secure cookies of a production config are seen): the login and session
// cookies' flags, a local-only return address, and the refusal of a
// tampered, expired, mis-purposed or replayed cookie.
func TestUISessionCookies(t *testing.T) {
	e := newAdminEnv(t, adminEnvOptions{})
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(u string, cookies ...*http.Cookie) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", u, nil)
		for _, c := range cookies {
			req.AddCookie(c)
		}
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	cookieOf := func(resp *http.Response, name string) *http.Cookie {
		t.Helper()
		for _, c := range resp.Cookies() {
			if c.Name == name {
				return c
			}
		}
		t.Fatalf("no %s cookie in %v", name, resp.Header["Set-Cookie"])
		return nil
	}
	// signIn returns the callback's answer and the login cookie it used.
	signIn := func(next, email string) (*http.Response, *http.Cookie, string) {
		t.Helper()
		resp := get(e.url + "/ui/login?next=" + url.QueryEscape(next))
		login := cookieOf(resp, loginCookie)
		if !login.HttpOnly || !login.Secure || login.SameSite != http.SameSiteLaxMode || login.Path != "/ui/callback" || login.MaxAge != 600 {
			t.Fatalf("login cookie flags: %+v", login)
		}
		authz, _ := url.Parse(resp.Header.Get("Location"))
		q := authz.Query()
		r2, err := noFollow.PostForm(e.issuer.URL+"/authorize", url.Values{"email": {email}, "state": {q.Get("state")},
			"nonce": {q.Get("nonce")}, "code_challenge": {q.Get("code_challenge")}, "redirect_uri": {q.Get("redirect_uri")}})
		if err != nil {
			t.Fatal(err)
		}
		r2.Body.Close()
		back := r2.Header.Get("Location")
		return get(back, login), login, back
	}
	resp, login, back := signIn("/ui/users/"+e.bob.ID, "alice@firm.example")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/users/"+e.bob.ID {
		t.Fatalf("callback: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	sess := cookieOf(resp, sessionCookie)
	if !sess.HttpOnly || !sess.Secure || sess.SameSite != http.SameSiteLaxMode || sess.Path != "/" || sess.MaxAge != 3600 {
		t.Fatalf("session cookie flags: %+v", sess)
	}
	if r := get(e.url+"/ui/users/"+e.bob.ID, sess); r.StatusCode != 200 {
		t.Fatalf("signed in: %d", r.StatusCode)
	}
	// The same callback again (code and login cookie replayed) signs no one in.
	if r := get(back, login); r.StatusCode == http.StatusSeeOther || len(r.Cookies()) > 0 && r.Cookies()[0].Name == sessionCookie {
		t.Fatalf("replayed callback: %d %v", r.StatusCode, r.Header["Set-Cookie"])
	}
	// Only local pages are return addresses.
	for _, next := range []string{"https://evil.example/ui/", "//evil.example/ui/x", "/\\evil.example", "/ui/login?next=//evil.example"} {
		if r, _, _ := signIn(next, "alice@firm.example"); r.Header.Get("Location") != "/ui/users" {
			t.Fatalf("next=%s: sent to %q", next, r.Header.Get("Location"))
		}
	}
	signedIn := func(v string) bool {
		r := get(e.url+"/ui/users/"+e.bob.ID, &http.Cookie{Name: sessionCookie, Value: v})
		return r.StatusCode == 200
	}
	// Tampered: alice's signature over a support identity.
	body, sig, _ := strings.Cut(sess.Value, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(body)
	forged := strings.Replace(string(raw), `"Claim":"alice@firm.example","Support":false`, `"Claim":"ops@agency.example","Support":true`, 1)
	if forged == string(raw) {
		t.Fatalf("session layout changed: %s", raw)
	}
	if signedIn(base64.RawURLEncoding.EncodeToString([]byte(forged)) + "." + sig) {
		t.Fatal("a tampered session was accepted")
	}
	codec := e.srv.adm.cookies
	ops := webauth.Identity{Claim: "ops@agency.example", Support: true}
	wrongKey := &cookieCodec{key: []byte(strings.Repeat("k", 32)), ttl: time.Hour, now: time.Now}
	other, _ := wrongKey.newSession(ops)
	expired, _ := codec.encode("session", sessionData{SID: "s1", ID: ops, Expires: time.Now().Add(-time.Second).Unix()})
	purpose, _ := codec.encode("login", sessionData{SID: "s1", ID: ops, Expires: time.Now().Add(time.Hour).Unix()})
	good, _ := codec.encode("session", sessionData{SID: "s1", ID: ops, Expires: time.Now().Add(time.Hour).Unix()})
	for name, v := range map[string]string{"another key": other, "expired": expired, "signed for the login cookie": purpose, "unsigned": body} {
		if signedIn(v) {
			t.Fatalf("%s session accepted", name)
		}
	}
	if !signedIn(good) {
		t.Fatal("the control session is refused")
	}
}

// Every page and form a firm admin may not use answers 403 (never 404 for
// something outside their firm), shows none of the other firm's data and
// changes nothing.
func TestUIFirmAdminRefusals(t *testing.T) {
	e := newAdminEnv(t, adminEnvOptions{insecureCookies: true})
	b := e.browser(t)
	_, body := b.signIn("/ui/users/"+e.bob.ID, "alice@firm.example")
	tok := csrfOf(t, body)
	unknown := "00000000-0000-0000-0000-000000000000"
	for _, path := range []string{"/ui/runs", "/ui/runs/run-ldap", "/ui/runs/run-ldap?format=csv", "/ui/runs/run-ldap?format=json",
		"/ui/runs/run-held/plan", "/ui/runs/no-such-run", "/ui/users/" + e.carol.ID, "/ui/users/" + unknown, "/ui/users?firm=4000",
		"/ui/audit", "/ui/audit?user=" + e.carol.ID, "/ui/audit?format=csv&user=" + e.carol.ID, "/ui/audit?user=" + unknown} {
		resp, body := b.get(path)
		if resp.StatusCode != 403 || strings.Contains(body, "carol") || strings.Contains(body, "2B002X") || strings.Contains(body, "u-1") {
			t.Errorf("GET %s: %d (want 403 without the other firm's data)", path, resp.StatusCode)
		}
	}
	for _, c := range []struct {
		path string
		form url.Values
	}{
		{"/ui/runs/run-held/approve", url.Values{"planHash": {"h-123"}}},
		{"/ui/users/" + e.carol.ID + "/grants", url.Values{"firmNumber": {"4000"}, "role": {"ccms/bill-preparation"}}},
		{"/ui/users/" + e.carol.ID + "/revoke", url.Values{"firmNumber": {"4000"}, "service": {"ccms"}, "role": {"case-management"}}},
		{"/ui/users/" + unknown + "/grants", url.Values{"firmNumber": {"3856"}, "role": {"ccms/bill-preparation"}}},
		{"/ui/users/" + e.bob.ID + "/grants", url.Values{"firmNumber": {"4000"}, "role": {"ccms/bill-preparation"}}},
		{"/ui/users/" + e.alice.ID + "/revoke", url.Values{"firmNumber": {"3856"}, "service": {ManagerService}, "role": {ManagerRole}}},
	} {
		c.form.Set("csrf", tok)
		if resp, body := b.post(c.path, c.form); resp.StatusCode != 403 || strings.Contains(body, "carol") {
			t.Errorf("POST %s: %d (want 403)", c.path, resp.StatusCode)
		}
	}
	if len(e.approver.calls) != 0 {
		t.Fatalf("a refused approve reached the approver: %v", e.approver.calls)
	}
	ctx := context.Background()
	gs, err := e.st.ListGrants(ctx, store.GrantQuery{})
	if err != nil || len(gs) != 2 {
		t.Fatalf("grants after refused forms: %d %v", len(gs), err)
	}
}

// Every form needs the CSRF token of its own session.
func TestUICSRFEveryForm(t *testing.T) {
	e := newAdminEnv(t, adminEnvOptions{insecureCookies: true})
	ops, other := e.browser(t), e.browser(t)
	_, body := ops.signIn("/ui/users/"+e.bob.ID, "ops@agency.example")
	tok := csrfOf(t, body)
	_, body = other.signIn("/ui/users/"+e.bob.ID, "ops@agency.example")
	otherTok := csrfOf(t, body)
	if otherTok == tok {
		t.Fatal("two sessions share a CSRF token")
	}
	forms := []struct {
		path string
		form url.Values
	}{
		{"/ui/logout", url.Values{}},
		{"/ui/runs/run-held/approve", url.Values{"planHash": {"h-123"}}},
		{"/ui/users/" + e.bob.ID + "/grants", url.Values{"firmNumber": {"3856"}, "role": {"ccms/bill-preparation"}}},
		{"/ui/users/" + e.alice.ID + "/revoke", url.Values{"firmNumber": {"3856"}, "service": {ManagerService}, "role": {ManagerRole}}},
	}
	for _, f := range forms {
		for name, csrf := range map[string]string{"none": "", "another session's": otherTok, "wrong": strings.Repeat("a", 64)} {
			v := url.Values{}
			for k, vs := range f.form {
				v[k] = vs
			}
			if csrf != "" {
				v.Set("csrf", csrf)
			}
			if resp, _ := ops.post(f.path, v); resp.StatusCode != 403 {
				t.Errorf("POST %s with %s CSRF token: %d, want 403", f.path, name, resp.StatusCode)
			}
		}
	}
	gs, err := e.st.ListGrants(context.Background(), store.GrantQuery{})
	if err != nil || len(gs) != 2 || len(e.approver.calls) != 0 {
		t.Fatalf("refused forms changed something: %d grants, approver %v, %v", len(gs), e.approver.calls, err)
	}
	// Still signed in (the refused logout did nothing), and the right token works.
	if resp, _ := ops.get("/ui/runs"); resp.StatusCode != 200 || resp.Request.URL.Path != "/ui/runs" {
		t.Fatalf("after refused logout: %d %s", resp.StatusCode, resp.Request.URL)
	}
	if resp, _ := ops.post("/ui/users/"+e.bob.ID+"/grants", url.Values{"csrf": {tok}, "firmNumber": {"3856"}, "role": {"ccms/bill-preparation"}}); resp.StatusCode != 200 {
		t.Fatalf("grant with the session's token: %d", resp.StatusCode)
	}
}

// TestUIHSTS: with Secure cookies (production) every page, the sign-in and
// the static assets carry Strict-Transport-Security; in development
// (oidc.insecureCookies, plain HTTP on purpose) none does.
func TestUIHSTS(t *testing.T) {
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, insecure := range []bool{false, true} {
		e := newAdminEnv(t, adminEnvOptions{insecureCookies: insecure})
		for _, path := range []string{"/ui/login", "/ui/runs", "/ui/static/style.css"} {
			resp, err := noFollow.Get(e.url + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := resp.Header.Get("Strict-Transport-Security")
			if want := map[bool]string{false: "max-age=31536000", true: ""}[insecure]; got != want {
				t.Fatalf("insecureCookies=%v %s (%d): Strict-Transport-Security %q, want %q", insecure, path, resp.StatusCode, got, want)
			}
		}
	}
}
