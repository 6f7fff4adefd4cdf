package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDevSignIn: with oidc.devIssuer (as in configs/dev.yaml), `serve`
// starts the local issuer and the report pages can be signed in to through
// the real authorization-code + PKCE flow: as support staff the runs page
// opens; as an unknown e-mail without support the pages refuse.
func TestDevSignIn(t *testing.T) {
	t.Chdir("../..")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "dirsyncd.yaml")
	doc := fmt.Sprintf(`env: development
store: {driver: sqlite, path: %s}
server: {listen: %q, publicURL: "http://%s", shutdownTimeout: 5s}
tokens:
  - {name: ops, token: ops-secret-token-1234, scopes: [admin:read]}
oidc: {devIssuer: true}
`, filepath.Join(dir, "d.db"), addr, addr)
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	ready := make(chan net.Addr, 1)
	testServeReady = func(a net.Addr) { ready <- a }
	t.Cleanup(func() { testServeReady = nil })
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() { done <- execute(ctx, []string{"serve", "--config", cfg}, &out, &errb) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d: %s", code, errb.String())
		}
	})
	select {
	case <-ready:
	case code := <-done:
		t.Fatalf("serve exited %d: %s", code, errb.String())
	}
	base := "http://" + addr

	signIn := func(email string, support bool) (*http.Client, *http.Response) {
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar}
		res, err := c.Get(base + "/ui/login")
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(page), `id="support"`) {
			t.Fatalf("issuer sign-in page: %d %s", res.StatusCode, page)
		}
		form := url.Values{"email": {email}}
		for _, m := range regexp.MustCompile(`name="([a-z_]+)" value="([^"]*)"`).FindAllStringSubmatch(string(page), -1) {
			form.Set(m[1], strings.ReplaceAll(m[2], "&#43;", "+"))
		}
		if support {
			form.Set("support", "1")
		}
		res, err = c.PostForm(res.Request.URL.String(), form)
		if err != nil {
			t.Fatal(err)
		}
		return c, res
	}

	c, res := signIn("helpdesk@agency.example", true)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Request.URL.String(), base+"/ui") {
		t.Fatalf("after sign-in as support: %d at %s: %.300s", res.StatusCode, res.Request.URL, body)
	}
	res, err = c.Get(base + "/ui/runs")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("runs page as support: %d", res.StatusCode)
	}

	_, res = signIn("nobody@unknown.example", false)
	res.Body.Close()
	if res.StatusCode < 400 {
		t.Fatalf("an unknown e-mail without support signed in: %d at %s", res.StatusCode, res.Request.URL)
	}
}
