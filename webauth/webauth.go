package webauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/dirsyncd/dirsyncd/config"
)

// Identity is a verified OIDC identity.
type Identity struct {
	Issuer  string
	Subject string
	// Claim is the value of the configured user claim (e.g. the e-mail).
	Claim string
	// Support: the support claim holds one of the configured values.
	Support bool
}

// ErrInvalid is wrapped by every refusal of a token (bad signature, issuer,
// audience, expiry, nonce, missing user claim). Other errors are the
// provider being unreachable.
var ErrInvalid = errors.New("invalid token")

// Provider verifies tokens from one issuer and runs the code flow.
type Provider struct {
	cfg      config.OIDCConfig
	redirect string
	client   *http.Client

	now func() time.Time

	mu       sync.Mutex
	failErr  error // the last discovery failure, answered until failedAt+retryDelay
	failedAt time.Time
	provider *oidc.Provider
	bearer   *oidc.IDTokenVerifier // audience = TokenAudience
	idTokens *oidc.IDTokenVerifier // audience = ClientID
	oauth    *oauth2.Config
}

// New returns a provider; redirectURL is where the issuer sends browsers
// back (…/ui/callback). client may be nil (a client with
// DefaultHTTPTimeout).
// DefaultHTTPTimeout bounds each request to the identity provider
// (discovery, JWKS, token exchange) when New is given no client.
const DefaultHTTPTimeout = 10 * time.Second

func New(cfg config.OIDCConfig, redirectURL string, client *http.Client) *Provider {
	if client == nil {
		// Not http.DefaultClient: it has no timeout, and an identity
		// provider that hangs would hold sign-ins and bearer checks (JWKS
		// fetches) until the browser gives up.
		client = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	return &Provider{cfg: cfg, redirect: redirectURL, client: client, now: time.Now}
}

// retryDelay is how long a failed discovery stays the answer before the
// next call tries again.
const retryDelay = 5 * time.Second

// init fetches discovery once. A failure is the answer for retryDelay,
// then the next call retries: an attempt can take the client's whole
// timeout under p.mu, and callers queued behind it must not each wait for
// an attempt of their own.
func (p *Provider) init(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.provider != nil {
		return nil
	}
	if p.failErr != nil && p.now().Before(p.failedAt.Add(retryDelay)) {
		return p.failErr
	}
	ctx = oidc.ClientContext(ctx, p.client)
	prov, err := oidc.NewProvider(ctx, p.cfg.Issuer)
	if err != nil {
		err = fmt.Errorf("webauth: discover %s: %w", p.cfg.Issuer, err)
		if ctx.Err() == nil { // the provider failed, not this caller who gave up
			p.failErr, p.failedAt = err, p.now()
		}
		return err
	}
	p.failErr = nil
	algs := []string{oidc.RS256, oidc.ES256, oidc.PS256, oidc.EdDSA}
	// Keys from the configured JWKS, else the issuer's jwks_uri, through
	// keySet (keys.go): go-oidc's own key set would fetch them again for
	// every token they fail to verify.
	jwksURL := p.cfg.JWKSURL
	if jwksURL == "" {
		var meta struct {
			JWKSURL string `json:"jwks_uri"`
		}
		if err := prov.Claims(&meta); err != nil || meta.JWKSURL == "" {
			return fmt.Errorf("webauth: discover %s: no jwks_uri (%v)", p.cfg.Issuer, err)
		}
		jwksURL = meta.JWKSURL
	}
	keys := newKeySet(jwksURL, p.client, p.now)
	p.bearer = oidc.NewVerifier(p.cfg.Issuer, keys, &oidc.Config{ClientID: p.cfg.TokenAudience(), SupportedSigningAlgs: algs, Now: p.now})
	p.idTokens = oidc.NewVerifier(p.cfg.Issuer, keys, &oidc.Config{ClientID: p.cfg.ClientID, SupportedSigningAlgs: algs, Now: p.now})
	p.oauth = &oauth2.Config{
		ClientID:     p.cfg.ClientID,
		ClientSecret: p.cfg.ClientSecret.Value(),
		Endpoint:     prov.Endpoint(),
		RedirectURL:  p.redirect,
		Scopes:       []string{oidc.ScopeOpenID, "email", "profile"},
	}
	p.provider = prov
	return nil
}

// VerifyToken checks a bearer token (a JWT from the issuer for the
// configured audience) and returns its identity.
func (p *Provider) VerifyToken(ctx context.Context, raw string) (Identity, error) {
	if err := p.init(ctx); err != nil {
		return Identity{}, err
	}
	if strings.Count(raw, ".") != 2 {
		return Identity{}, fmt.Errorf("webauth: verify token: not a JWT: %w", ErrInvalid)
	}
	tok, err := p.bearer.Verify(oidc.ClientContext(ctx, p.client), raw)
	if err != nil {
		return Identity{}, fmt.Errorf("webauth: verify token: %w: %w", ErrInvalid, err)
	}
	return p.identity(tok)
}

// AuthCodeURL is where a browser starts signing in: state and nonce are
// random values the caller keeps (in a short-lived cookie), verifier the
// PKCE verifier (oauth2.GenerateVerifier); only its S256 challenge is sent.
func (p *Provider) AuthCodeURL(ctx context.Context, state, nonce, verifier string) (string, error) {
	if err := p.init(ctx); err != nil {
		return "", err
	}
	return p.oauth.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), nil
}

// Exchange trades the code for tokens (sending the PKCE verifier) and
// verifies the ID token and its nonce.
func (p *Provider) Exchange(ctx context.Context, code, verifier, nonce string) (Identity, error) {
	if err := p.init(ctx); err != nil {
		return Identity{}, err
	}
	ctx = oidc.ClientContext(ctx, p.client)
	tok, err := p.oauth.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			// The provider refused the code: say which error, never the body.
			return Identity{}, fmt.Errorf("webauth: exchange code: %w: provider said %q", ErrInvalid, re.ErrorCode)
		}
		return Identity{}, fmt.Errorf("webauth: exchange code: %w", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return Identity{}, fmt.Errorf("webauth: exchange code: %w: no id_token in the response", ErrInvalid)
	}
	idt, err := p.idTokens.Verify(ctx, raw)
	if err != nil {
		return Identity{}, fmt.Errorf("webauth: verify id token: %w: %w", ErrInvalid, err)
	}
	if idt.Nonce == "" || idt.Nonce != nonce {
		return Identity{}, fmt.Errorf("webauth: verify id token: %w: nonce does not match", ErrInvalid)
	}
	return p.identity(idt)
}

func (p *Provider) identity(tok *oidc.IDToken) (Identity, error) {
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return Identity{}, fmt.Errorf("webauth: decode claims: %w: %w", ErrInvalid, err)
	}
	id := Identity{Issuer: tok.Issuer, Subject: tok.Subject}
	v, _ := claims[p.cfg.UserClaim].(string)
	if v == "" {
		return Identity{}, fmt.Errorf("webauth: %w: claim %q missing or not a string", ErrInvalid, p.cfg.UserClaim)
	}
	if p.cfg.UserClaim == "email" {
		// Some providers (Cognito) send email_verified as a string.
		switch ev := claims["email_verified"].(type) {
		case bool:
			if !ev {
				return Identity{}, fmt.Errorf("webauth: %w: email_verified is false", ErrInvalid)
			}
		case string:
			if !strings.EqualFold(ev, "true") {
				return Identity{}, fmt.Errorf("webauth: %w: email_verified is %q", ErrInvalid, ev)
			}
		}
	}
	id.Claim = v
	id.Support = hasValue(claims[p.cfg.SupportClaim], p.cfg.SupportValues)
	return id, nil
}

func hasValue(v any, want []string) bool {
	if len(want) == 0 {
		return false
	}
	match := func(s string) bool {
		for _, w := range want {
			if s == w {
				return true
			}
		}
		return false
	}
	switch x := v.(type) {
	case string:
		return match(x)
	case []any:
		for _, e := range x {
			if s, ok := e.(string); ok && match(s) {
				return true
			}
		}
	}
	return false
}
