package server

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/dirsyncd/dirsyncd/store"
)

// A form body past the limit is 413, also when no Content-Length announces
// it (a chunked body read past the limit), not a CSRF refusal; it changes
// nothing.
func TestUIOversizedFormIs413(t *testing.T) {
	e := newAdminEnv(t, adminEnvOptions{insecureCookies: true})
	b := e.browser(t)
	_, body := b.signIn("/ui/users/"+e.bob.ID, "alice@firm.example")
	form := url.Values{"csrf": {csrfOf(t, body)}, "firmNumber": {"3856"}, "role": {"ccms/case-management"},
		"pad": {strings.Repeat("x", 8192)}}
	for _, chunked := range []bool{false, true} {
		var rd io.Reader = strings.NewReader(form.Encode())
		if chunked {
			rd = io.MultiReader(rd) // no length: sent chunked
		}
		req, _ := http.NewRequest("POST", e.url+"/ui/users/"+e.bob.ID+"/grants", rd)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := b.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("oversized form (chunked %v): %d, want 413", chunked, resp.StatusCode)
		}
	}
	gs, err := e.st.ListGrants(context.Background(), store.GrantQuery{UserID: e.bob.ID})
	if err != nil || len(gs) != 0 {
		t.Fatalf("an oversized form changed grants: %v %v", gs, err)
	}
}

// A page refused with a signed-in user keeps a working sign-out button:
// its form carries the session's CSRF token.
func TestUIErrorPageCanSignOut(t *testing.T) {
	e := newAdminEnv(t, adminEnvOptions{insecureCookies: true})
	b := e.browser(t)
	b.signIn("/ui/users", "alice@firm.example")
	resp, body := b.get("/ui/runs")
	if resp.StatusCode != 403 || !strings.Contains(body, `action="/ui/logout"`) {
		t.Fatalf("refused page: %d", resp.StatusCode)
	}
	if resp, _ := b.post("/ui/logout", url.Values{"csrf": {csrfOf(t, body)}}); resp.StatusCode != 200 {
		t.Fatalf("sign out from a refused page: %d", resp.StatusCode)
	}
	if resp, _ := b.get("/ui/users"); !strings.HasPrefix(resp.Request.URL.String(), e.issuer.URL) {
		t.Fatalf("still signed in: %s", resp.Request.URL)
	}
}
