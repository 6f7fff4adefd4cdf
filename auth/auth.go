package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/dirsyncd/dirsyncd/config"
)

// Scopes a token can carry.
const (
	ScopeSCIM       = "scim"
	ScopeAdminRead  = "admin:read"
	ScopeAdminWrite = "admin:write"
	ScopeSupport    = "support"
)

// KnownScopes lists every valid scope.
var KnownScopes = []string{ScopeSCIM, ScopeAdminRead, ScopeAdminWrite, ScopeSupport}

// Principal is an authenticated caller.
type Principal struct {
	Name      string   // token name from config, or the signed-in user's id
	Kind      string   // "token" or "oidc"
	Scopes    []string // granted scopes
	RateLimit float64  // requests/s for this client, 0 = unlimited
	Burst     int
}

// Has reports whether p holds scope. "support" implies the admin scopes.
func (p Principal) Has(scope string) bool {
	for _, s := range p.Scopes {
		if s == scope || (s == ScopeSupport && (scope == ScopeAdminRead || scope == ScopeAdminWrite)) ||
			(s == ScopeAdminWrite && scope == ScopeAdminRead) {
			return true
		}
	}
	return false
}

// Actor is the audit actor for p's changes: "scim:<name>" for SCIM clients,
// "admin:<name>" otherwise.
func (p Principal) Actor() string {
	if p.Kind == "token" && p.Has(ScopeSCIM) && !p.Has(ScopeAdminRead) {
		return "scim:" + p.Name
	}
	return "admin:" + p.Name
}

type entry struct {
	hash [32]byte
	p    Principal
}

// Verifier checks bearer tokens against the configured ones.
type Verifier struct{ entries []entry }

// NewVerifier builds a verifier from config tokens (already validated).
func NewVerifier(tokens []config.TokenConfig) (*Verifier, error) {
	v := &Verifier{}
	for i, t := range tokens {
		var e entry
		switch {
		case t.SHA256 != "":
			b, err := hex.DecodeString(t.SHA256)
			if err != nil || len(b) != 32 {
				return nil, fmt.Errorf("auth: tokens[%d] (%s): sha256 must be 64 hex characters", i, t.Name)
			}
			copy(e.hash[:], b)
		case t.Token.Value() != "":
			e.hash = sha256.Sum256([]byte(t.Token.Value()))
		default:
			return nil, fmt.Errorf("auth: tokens[%d] (%s): neither token nor sha256 set", i, t.Name)
		}
		e.p = Principal{Name: t.Name, Kind: "token", Scopes: append([]string(nil), t.Scopes...), RateLimit: t.RateLimit, Burst: t.Burst}
		v.entries = append(v.entries, e)
	}
	return v, nil
}

// Verify returns the principal whose token is bearer. It hashes the
// presented token and compares against every entry in constant time, so
// timing reveals neither which token matched nor how much of it.
func (v *Verifier) Verify(bearer string) (Principal, bool) {
	if bearer == "" {
		return Principal{}, false
	}
	h := sha256.Sum256([]byte(bearer))
	var found Principal
	ok := 0
	for _, e := range v.entries {
		if subtle.ConstantTimeCompare(h[:], e.hash[:]) == 1 {
			found, ok = e.p, 1
		}
	}
	return found, ok == 1
}

// BearerToken extracts the token of an "Authorization: Bearer …" header.
func BearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(h[len(prefix):]), true
}

type ctxKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// PrincipalFrom returns the principal in ctx, if any.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}
