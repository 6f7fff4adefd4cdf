package config

import (
	"strings"
	"testing"
	"time"
)

func TestOIDCConfig(t *testing.T) {
	key := strings.Repeat("k", 32)
	base := "env: development\nstore:\n  driver: sqlite\n"
	cases := []struct {
		name, doc string
		want      string // substring of a problem; "" = valid
	}{
		{"off by default", base, ""},
		{"valid", base + "oidc:\n  issuer: https://idp.example\n  clientID: dirsyncd\n  sessionKey: " + key + "\n", ""},
		{"http issuer in development", base + "oidc:\n  issuer: http://127.0.0.1:5556\n  clientID: d\n  sessionKey: " + key + "\n", ""},
		{"http issuer in production", "store:\n  driver: sqlite\noidc:\n  issuer: http://idp.example\n  clientID: d\n  sessionKey: " + key + "\n", "oidc.issuer: must use https"},
		{"relative issuer", base + "oidc:\n  issuer: idp.example\n  clientID: d\n  sessionKey: " + key + "\n", "oidc.issuer: must be an absolute"},
		{"no client id", base + "oidc:\n  issuer: https://idp.example\n  sessionKey: " + key + "\n", "oidc.clientID: is required"},
		{"short session key", base + "oidc:\n  issuer: https://idp.example\n  clientID: d\n  sessionKey: short\n", "oidc.sessionKey"},
		{"insecure cookies in production", "store:\n  driver: sqlite\noidc:\n  issuer: https://idp.example\n  clientID: d\n  sessionKey: " + key + "\n  insecureCookies: true\n", "oidc.insecureCookies"},
		{"dev issuer in development", base + "oidc:\n  devIssuer: true\n", ""},
		{"dev issuer in production", "store:\n  driver: sqlite\noidc:\n  devIssuer: true\n", "oidc.devIssuer: is allowed only with env: development"},
		{"dev issuer with an issuer", base + "oidc:\n  devIssuer: true\n  issuer: https://idp.example\n  clientID: d\n  sessionKey: " + key + "\n", "oidc.devIssuer: cannot be combined"},
		{"bad jwks url", base + "oidc:\n  issuer: https://idp.example\n  clientID: d\n  sessionKey: " + key + "\n  jwksURL: keys\n", "oidc.jwksURL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse([]byte(c.doc))
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.OIDC.UserClaim != "email" || cfg.OIDC.SupportClaim != "groups" || cfg.OIDC.SessionTTL != 8*time.Hour {
					t.Fatalf("defaults: %+v", cfg.OIDC)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if strings.Contains(err.Error(), key) {
				t.Fatal("the session key reached the error")
			}
		})
	}
	c := OIDCConfig{ClientID: "a"}
	if c.TokenAudience() != "a" {
		t.Fatal("audience defaults to the client id")
	}
	c.Audience = "api://dirsyncd"
	if c.TokenAudience() != "api://dirsyncd" {
		t.Fatal("audience")
	}
}
