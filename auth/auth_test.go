package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http/httptest"
	"testing"

	"github.com/dirsyncd/dirsyncd/config"
)

func TestVerifier(t *testing.T) {
	sum := sha256.Sum256([]byte("hashed-secret"))
	v, err := NewVerifier([]config.TokenConfig{
		{Name: "entra", Token: config.NewSecret("plain-secret"), Scopes: []string{ScopeSCIM}},
		{Name: "ops", SHA256: hex.EncodeToString(sum[:]), Scopes: []string{ScopeSupport}},
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		token, name string
		ok          bool
	}{
		{"plain-secret", "entra", true},
		{"hashed-secret", "ops", true},
		{"plain-secreT", "", false},
		{"", "", false},
		{hex.EncodeToString(sum[:]), "", false}, // the hash itself is not a token
	}
	for _, c := range cases {
		p, ok := v.Verify(c.token)
		if ok != c.ok || p.Name != c.name {
			t.Errorf("Verify(%q) = %q,%v; want %q,%v", c.token, p.Name, ok, c.name, c.ok)
		}
	}
}

func TestNewVerifierRejectsBadHash(t *testing.T) {
	if _, err := NewVerifier([]config.TokenConfig{{Name: "x", SHA256: "abc"}}); err == nil {
		t.Fatal("short hash accepted")
	}
	if _, err := NewVerifier([]config.TokenConfig{{Name: "x"}}); err == nil {
		t.Fatal("token without value accepted")
	}
}

func TestScopesAndActor(t *testing.T) {
	support := Principal{Name: "ops", Kind: "token", Scopes: []string{ScopeSupport}}
	if !support.Has(ScopeAdminWrite) || !support.Has(ScopeAdminRead) || support.Has(ScopeSCIM) {
		t.Fatal("support implies admin scopes only")
	}
	writer := Principal{Scopes: []string{ScopeAdminWrite}}
	if !writer.Has(ScopeAdminRead) || writer.Has(ScopeSupport) {
		t.Fatal("admin:write implies admin:read only")
	}
	scim := Principal{Name: "entra", Kind: "token", Scopes: []string{ScopeSCIM}}
	if scim.Actor() != "scim:entra" || support.Actor() != "admin:ops" {
		t.Fatalf("actors: %q %q", scim.Actor(), support.Actor())
	}
}

func TestBearerAndContext(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	if _, ok := BearerToken(r); ok {
		t.Fatal("no header")
	}
	r.Header.Set("Authorization", "Basic abc")
	if _, ok := BearerToken(r); ok {
		t.Fatal("basic is not bearer")
	}
	r.Header.Set("Authorization", "bearer  tok ")
	if tok, ok := BearerToken(r); !ok || tok != "tok" {
		t.Fatalf("got %q %v", tok, ok)
	}
	ctx := WithPrincipal(context.Background(), Principal{Name: "a"})
	if p, ok := PrincipalFrom(ctx); !ok || p.Name != "a" {
		t.Fatal("principal lost")
	}
	if _, ok := PrincipalFrom(context.Background()); ok {
		t.Fatal("phantom principal")
	}
}
