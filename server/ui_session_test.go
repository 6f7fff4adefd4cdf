package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/auth"
	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/mapping"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/webauth"
)

// replica is a second server over e's store with e's session key and
// issuer: another replica, or the same daemon after a restart.
func (e *adminEnv) replica(t *testing.T) string {
	t.Helper()
	cat, err := mapping.LoadCatalogue("../configs/catalogue.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := mapping.LoadRules("../configs/rules.yaml", cat)
	if err != nil {
		t.Fatal(err)
	}
	eng := mapping.NewEngine(cat, rs)
	v, err := auth.NewVerifier(nil)
	if err != nil {
		t.Fatal(err)
	}
	ocfg := config.OIDCConfig{Issuer: e.issuer.URL, ClientID: "dirsyncd", UserClaim: "email", SupportClaim: "groups",
		SupportValues: []string{"dirsyncd-support"}, SessionKey: config.NewSecret(testSessionKey), SessionTTL: time.Hour,
		InsecureCookies: true}
	srv, err := New(Options{Config: config.ServerConfig{MaxBodyBytes: 4096}, Store: e.st, Verifier: v, Logger: zap.NewNop(),
		Admin: &AdminOptions{Store: e.st, Catalogue: cat, Status: eng.StatusOf,
			OIDC: webauth.New(ocfg, e.url+"/ui/callback", nil), OIDCConfig: ocfg}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs.URL
}

func (b *browser) sessionCookie() *http.Cookie {
	b.t.Helper()
	u, _ := url.Parse(b.e.url)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == sessionCookie {
			return c
		}
	}
	b.t.Fatal("no session cookie in the jar")
	return nil
}

// withCookie requests base+path with only the given session cookie (a
// stolen copy), following no redirect.
func withCookie(t *testing.T, method, u string, ck *http.Cookie, form url.Values) *http.Response {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, u, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// Signing out ends the session on the server, not only in the browser: a
// copy of the cookie taken before is refused afterwards, by this server,
// by another replica and after a restart (the revocation is in the store),
// for pages and forms alike; the user's other sessions go on. The logout
// is audited with the user as actor and without the session's id.
func TestUILogoutRevokesSession(t *testing.T) {
	e := newAdminEnv(t, adminEnvOptions{insecureCookies: true})
	b, other := e.browser(t), e.browser(t)
	_, body := b.signIn("/ui/users/"+e.bob.ID, "alice@firm.example")
	tok := csrfOf(t, body)
	other.signIn("/ui/users", "alice@firm.example")
	stolen := b.sessionCookie()
	replica := e.replica(t)
	page := "/ui/users/" + e.bob.ID
	for _, base := range []string{e.url, replica} {
		if r := withCookie(t, "GET", base+page, stolen, nil); r.StatusCode != 200 {
			t.Fatalf("before logout, %s: %d", base, r.StatusCode)
		}
	}
	if resp, _ := b.post("/ui/logout", url.Values{"csrf": {tok}}); resp.StatusCode != 200 {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	for _, base := range []string{e.url, replica} {
		if r := withCookie(t, "GET", base+page, stolen, nil); r.StatusCode != http.StatusFound ||
			!strings.HasPrefix(r.Header.Get("Location"), "/ui/login") {
			t.Errorf("stolen cookie after logout, GET on %s: %d %s", base, r.StatusCode, r.Header.Get("Location"))
		}
		form := url.Values{"csrf": {tok}, "firmNumber": {"3856"}, "role": {"ccms/case-management"}}
		if r := withCookie(t, "POST", base+page+"/grants", stolen, form); r.StatusCode != http.StatusUnauthorized {
			t.Errorf("stolen cookie after logout, POST on %s: %d", base, r.StatusCode)
		}
	}
	gs, err := e.st.ListGrants(context.Background(), store.GrantQuery{UserID: e.bob.ID})
	if err != nil || len(gs) != 0 {
		t.Fatalf("a revoked session changed grants: %v %v", gs, err)
	}
	if resp, _ := other.get(page); resp.StatusCode != 200 || resp.Request.URL.Path != page {
		t.Fatalf("the user's other session: %d %s", resp.StatusCode, resp.Request.URL)
	}
	var logouts []audit.Event
	err = e.st.Audit(context.Background(), store.AuditFilter{Action: "session.logout"}, func(ev audit.Event) error {
		logouts = append(logouts, ev)
		return nil
	})
	if err != nil || len(logouts) != 1 || logouts[0].Actor != "admin:"+e.alice.ID {
		t.Fatalf("logout events: %+v %v", logouts, err)
	}
	var sd sessionData
	if err := e.srv.adm.cookies.decode("session", stolen.Value, &sd); err != nil {
		t.Fatal(err)
	}
	if ev := logouts[0]; strings.Contains(ev.ObjectID+string(ev.After)+string(ev.Before), sd.SID) {
		t.Fatalf("the session id reached the audit log: %+v", ev)
	}
}

// A logout whose revocation cannot be written says so (500, the store's
// error only logged) and still clears the browser's cookie.
func TestUILogoutStoreError(t *testing.T) {
	st := &failingUpdates{Store: openStore(t)}
	e := newAdminEnv(t, adminEnvOptions{insecureCookies: true, store: st})
	b := e.browser(t)
	_, body := b.signIn("/ui/users", "alice@firm.example")
	st.fail.Store(true)
	resp, body := b.post("/ui/logout", url.Values{"csrf": {csrfOf(t, body)}})
	if resp.StatusCode != 500 || strings.Contains(body, "db-internal-detail") {
		t.Fatalf("logout with a failing store: %d %s", resp.StatusCode, body)
	}
	cleared := false
	for _, c := range resp.Cookies() {
		cleared = cleared || c.Name == sessionCookie && c.MaxAge < 0
	}
	if !cleared || e.logs.FilterMessage("audit logout").Len() != 1 {
		t.Fatalf("cookie cleared %v, logged %d", cleared, e.logs.FilterMessage("audit logout").Len())
	}
}
