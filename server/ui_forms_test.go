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
