package webauth_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/webauth"
	"github.com/dirsyncd/dirsyncd/webauth/oidctest"
)

func newProvider(t *testing.T) (*oidctest.Issuer, *webauth.Provider) {
	is := oidctest.New(t, "dirsyncd")
	is.Groups["ops@agency.example"] = []string{"staff", "dirsyncd-support"}
	cfg := config.OIDCConfig{Issuer: is.URL, ClientID: "dirsyncd", UserClaim: "email", SupportClaim: "groups",
		SupportValues: []string{"dirsyncd-support"}}
	return is, webauth.New(cfg, "http://127.0.0.1:1/ui/callback", nil)
}

func TestVerifyToken(t *testing.T) {
	is, p := newProvider(t)
	ctx := context.Background()
	cases := []struct {
		name    string
		token   string
		claim   string
		support bool
		invalid bool
	}{
		{"valid", is.Token(map[string]any{"email": "alice@firm.example"}), "alice@firm.example", false, false},
		{"support group", is.Token(map[string]any{"email": "ops@agency.example"}), "ops@agency.example", true, false},
		{"wrong audience", is.Token(map[string]any{"email": "a@b.example", "aud": "other"}), "", false, true},
		{"wrong issuer", is.Token(map[string]any{"email": "a@b.example", "iss": "https://evil.example"}), "", false, true},
		{"expired", is.Token(map[string]any{"email": "a@b.example", "exp": time.Now().Add(-time.Hour).Unix()}), "", false, true},
		{"foreign key", is.ForeignToken(map[string]any{"email": "a@b.example"}), "", false, true},
		{"no email claim", is.Token(map[string]any{"name": "x"}), "", false, true},
		{"unverified email", is.Token(map[string]any{"email": "a@b.example", "email_verified": false}), "", false, true},
		{"unverified email as a string", is.Token(map[string]any{"email": "a@b.example", "email_verified": "false"}), "", false, true},
		{"verified email as a string", is.Token(map[string]any{"email": "a@b.example", "email_verified": "true"}), "a@b.example", false, false},
		{"verified email", is.Token(map[string]any{"email": "a@b.example", "email_verified": true}), "a@b.example", false, false},
		{"not a jwt", "static-token-value", "", false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, err := p.VerifyToken(ctx, c.token)
			if c.invalid {
				if !errors.Is(err, webauth.ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.Claim != c.claim || id.Support != c.support || id.Issuer != is.URL || id.Subject == "" {
				t.Fatalf("identity = %+v", id)
			}
		})
	}
}

func TestProviderDownIsNotInvalid(t *testing.T) {
	p := webauth.New(config.OIDCConfig{Issuer: "http://127.0.0.1:1", ClientID: "x", UserClaim: "email"}, "", nil)
	_, err := p.VerifyToken(context.Background(), "a.b.c")
	if err == nil || errors.Is(err, webauth.ErrInvalid) {
		t.Fatalf("unreachable issuer: err = %v, want a non-ErrInvalid error", err)
	}
}

// codeFlow plays the browser: open the authorize URL, submit the e-mail,
// and return the code and state the issuer redirects back with.
func codeFlow(t *testing.T, authURL, email string) (code, state string) {
	t.Helper()
	u, _ := url.Parse(authURL)
	q := u.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" {
		t.Fatalf("authorize URL lacks PKCE or nonce: %s", authURL)
	}
	resp, err := http.Get(authURL)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("authorize page: %v %v", err, resp)
	}
	resp.Body.Close()
	form := url.Values{"email": {email}, "state": {q.Get("state")}, "nonce": {q.Get("nonce")},
		"code_challenge": {q.Get("code_challenge")}, "redirect_uri": {q.Get("redirect_uri")}}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = c.PostForm(u.Scheme+"://"+u.Host+"/authorize", form)
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %v %v", err, resp)
	}
	resp.Body.Close()
	back, _ := url.Parse(resp.Header.Get("Location"))
	return back.Query().Get("code"), back.Query().Get("state")
}

func TestCodeFlowWithPKCE(t *testing.T) {
	_, p := newProvider(t)
	ctx := context.Background()
	verifier := oauth2.GenerateVerifier()
	authURL, err := p.AuthCodeURL(ctx, "state-1", "nonce-1", verifier)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(authURL, verifier) {
		t.Fatal("the PKCE verifier itself is in the authorize URL")
	}
	code, state := codeFlow(t, authURL, "alice@firm.example")
	if state != "state-1" {
		t.Fatalf("state = %q", state)
	}
	id, err := p.Exchange(ctx, code, verifier, "nonce-1")
	if err != nil {
		t.Fatal(err)
	}
	if id.Claim != "alice@firm.example" {
		t.Fatalf("identity = %+v", id)
	}

	// A wrong verifier (code intercepted without it) is refused.
	authURL, _ = p.AuthCodeURL(ctx, "s", "n", verifier)
	code, _ = codeFlow(t, authURL, "alice@firm.example")
	if _, err := p.Exchange(ctx, code, oauth2.GenerateVerifier(), "n"); !errors.Is(err, webauth.ErrInvalid) {
		t.Fatalf("wrong verifier: err = %v", err)
	}
	// A nonce that does not match is refused.
	authURL, _ = p.AuthCodeURL(ctx, "s", "n2", verifier)
	code, _ = codeFlow(t, authURL, "alice@firm.example")
	if _, err := p.Exchange(ctx, code, verifier, "other"); !errors.Is(err, webauth.ErrInvalid) {
		t.Fatalf("wrong nonce: err = %v", err)
	}
}

func TestConfiguredJWKS(t *testing.T) {
	is := oidctest.New(t, "dirsyncd")
	ok := webauth.New(config.OIDCConfig{Issuer: is.URL, ClientID: "dirsyncd", UserClaim: "email", JWKSURL: is.URL + "/keys"}, "", nil)
	if _, err := ok.VerifyToken(context.Background(), is.Token(map[string]any{"email": "a@b.example"})); err != nil {
		t.Fatalf("configured JWKS: %v", err)
	}
	// Keys from another issuer's JWKS do not verify this issuer's tokens.
	other := oidctest.New(t, "dirsyncd")
	bad := webauth.New(config.OIDCConfig{Issuer: is.URL, ClientID: "dirsyncd", UserClaim: "email", JWKSURL: other.URL + "/keys"}, "", nil)
	if _, err := bad.VerifyToken(context.Background(), is.Token(map[string]any{"email": "a@b.example"})); !errors.Is(err, webauth.ErrInvalid) {
		t.Fatalf("foreign JWKS: %v", err)
	}
	// A separate API audience.
	aud := webauth.New(config.OIDCConfig{Issuer: is.URL, ClientID: "dirsyncd", Audience: "api://dirsyncd", UserClaim: "email"}, "", nil)
	if _, err := aud.VerifyToken(context.Background(), is.Token(map[string]any{"email": "a@b.example", "aud": "api://dirsyncd"})); err != nil {
		t.Fatalf("audience: %v", err)
	}
	if _, err := aud.VerifyToken(context.Background(), is.Token(map[string]any{"email": "a@b.example"})); !errors.Is(err, webauth.ErrInvalid) {
		t.Fatalf("client-id audience accepted for the API: %v", err)
	}
	// A userName claim.
	un := webauth.New(config.OIDCConfig{Issuer: is.URL, ClientID: "dirsyncd", UserClaim: "preferred_username"}, "", nil)
	id, err := un.VerifyToken(context.Background(), is.Token(map[string]any{"email": "a@b.example", "preferred_username": "alice"}))
	if err != nil || id.Claim != "alice" {
		t.Fatalf("preferred_username: %+v %v", id, err)
	}
}
