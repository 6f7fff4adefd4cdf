// Package oidctest is a local OpenID Connect issuer for tests: discovery,
// JWKS (an RSA key generated when the issuer starts), an authorize page
// where the tester types the e-mail to sign in as, and a token endpoint
// that checks the PKCE verifier. It mints bearer tokens for API tests too.
// `dirsyncd serve` also starts one for `make run` (oidc.devIssuer, allowed
// only with env: development) so the report pages can be tried locally.
package oidctest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Issuer is a running local issuer.
type Issuer struct {
	URL      string
	ClientID string
	// Groups gives the "groups" claim per e-mail.
	Groups map[string][]string

	srv    *httptest.Server
	key    *rsa.PrivateKey
	kid    string
	old    []jose.JSONWebKey // keys published beside the current one after Rotate
	signer jose.Signer
	now    func() time.Time

	keyFetches int

	mu    sync.Mutex
	codes map[string]codeGrant
	// Exchanges counts successful code exchanges.
	Exchanges int
	// SupportGroup, when set, adds a checkbox to the sign-in page that puts
	// this value in the token's "groups" claim (the development sign-in:
	// sign in as the agency's support staff, or as a firm's user).
	SupportGroup string
}

type codeGrant struct {
	email, nonce, challenge, redirect string
	support                           bool
}

// New starts an issuer for clientID; it stops when the test ends.
func New(t testing.TB, clientID string) *Issuer {
	t.Helper()
	is, err := Start(clientID)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(is.Close)
	return is
}

// Start starts an issuer for clientID on a loopback port, outside tests:
// `make run` signs people in to the report pages with it (oidc.devIssuer,
// development only), as it uses the fake CWA. Close stops it.
func Start(clientID string) (*Issuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("oidctest: generate key: %w", err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("oidctest: signer: %w", err)
	}
	is := &Issuer{ClientID: clientID, Groups: map[string][]string{}, key: key, kid: "k1", signer: signer, now: time.Now, codes: map[string]codeGrant{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", is.discovery)
	mux.HandleFunc("GET /keys", is.keys)
	mux.HandleFunc("GET /authorize", is.authorizePage)
	mux.HandleFunc("POST /authorize", is.authorize)
	mux.HandleFunc("POST /token", is.token)
	is.srv = httptest.NewServer(mux)
	is.URL = is.srv.URL
	return is, nil
}

// Close stops the issuer.
func (is *Issuer) Close() { is.srv.Close() }

func (is *Issuer) discovery(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, map[string]any{
		"issuer":                                is.URL,
		"authorization_endpoint":                is.URL + "/authorize",
		"token_endpoint":                        is.URL + "/token",
		"jwks_uri":                              is.URL + "/keys",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"code_challenge_methods_supported":      []string{"S256"},
	})
}

func (is *Issuer) keys(w http.ResponseWriter, r *http.Request) {
	is.mu.Lock()
	is.keyFetches++
	keys := append([]jose.JSONWebKey{{Key: &is.key.PublicKey, KeyID: is.kid, Algorithm: "RS256", Use: "sig"}}, is.old...)
	is.mu.Unlock()
	writeJSON(w, jose.JSONWebKeySet{Keys: keys})
}

// KeyFetches counts the requests for the issuer's keys (jwks_uri).
func (is *Issuer) KeyFetches() int {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.keyFetches
}

// Rotate makes a new signing key current (tokens from now on are signed
// with it); the old one stays published beside it.
func (is *Issuer) Rotate() error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	kid := fmt.Sprintf("k%d", len(is.old)+2)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return err
	}
	is.old = append(is.old, jose.JSONWebKey{Key: &is.key.PublicKey, KeyID: is.kid, Algorithm: "RS256", Use: "sig"})
	is.key, is.kid, is.signer = key, kid, signer
	return nil
}

var page = template.Must(template.New("a").Parse(`<!doctype html><title>Local issuer</title>
<h1>Local issuer sign-in</h1>
<form method="post" action="/authorize">
{{range $k, $v := .Hidden}}<input type="hidden" name="{{$k}}" value="{{index $v 0}}">{{end}}
<label>E-mail <input id="email" name="email" type="email"></label>
{{if .SupportGroup}}<label><input id="support" name="support" type="checkbox" value="1" checked> agency support staff (every firm)</label>{{end}}
<button id="signin" type="submit">Sign in</button>
</form>`))

func (is *Issuer) authorizePage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != is.ClientID || q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" ||
		q.Get("code_challenge") == "" || q.Get("state") == "" || q.Get("nonce") == "" {
		http.Error(w, "bad authorize request", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = page.Execute(w, map[string]any{"Hidden": map[string][]string{
		"redirect_uri": {q.Get("redirect_uri")}, "state": {q.Get("state")}, "nonce": {q.Get("nonce")},
		"code_challenge": {q.Get("code_challenge")},
	}, "SupportGroup": is.SupportGroup})
}

func (is *Issuer) authorize(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("email") == "" {
		http.Error(w, "email required", http.StatusBadRequest)
		return
	}
	code := randHex()
	is.mu.Lock()
	is.codes[code] = codeGrant{email: r.PostForm.Get("email"), nonce: r.PostForm.Get("nonce"),
		challenge: r.PostForm.Get("code_challenge"), redirect: r.PostForm.Get("redirect_uri"),
		support: is.SupportGroup != "" && r.PostForm.Get("support") == "1"}
	is.mu.Unlock()
	u, err := url.Parse(r.PostForm.Get("redirect_uri"))
	if err != nil {
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	}
	v := u.Query()
	v.Set("code", code)
	v.Set("state", r.PostForm.Get("state"))
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func (is *Issuer) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		tokenError(w, "invalid_request")
		return
	}
	is.mu.Lock()
	g, ok := is.codes[r.PostForm.Get("code")]
	delete(is.codes, r.PostForm.Get("code"))
	is.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	switch {
	case !ok || r.PostForm.Get("grant_type") != "authorization_code":
		tokenError(w, "invalid_grant")
		return
	case base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge:
		tokenError(w, "invalid_grant") // PKCE verifier does not match
		return
	case r.PostForm.Get("redirect_uri") != g.redirect:
		tokenError(w, "invalid_grant")
		return
	}
	claims := map[string]any{"email": g.email, "nonce": g.nonce}
	if g.support {
		claims["groups"] = []string{is.SupportGroup}
	}
	id := is.Token(claims)
	is.mu.Lock()
	is.Exchanges++
	is.mu.Unlock()
	writeJSON(w, map[string]any{"access_token": randHex(), "token_type": "Bearer", "expires_in": 3600, "id_token": id})
}

// Token mints a signed JWT: iss, aud (the client id), sub (from email),
// iat and exp (one hour) are filled in unless claims sets them; "groups"
// comes from Groups[email] unless set.
func (is *Issuer) Token(claims map[string]any) string {
	c := map[string]any{"iss": is.URL, "aud": is.ClientID, "iat": is.now().Unix(), "exp": is.now().Add(time.Hour).Unix()}
	email, _ := claims["email"].(string)
	c["sub"] = "sub-" + email
	if gs, ok := is.Groups[email]; ok {
		c["groups"] = gs
	}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	b, _ := json.Marshal(c)
	is.mu.Lock()
	signer := is.signer
	is.mu.Unlock()
	obj, err := signer.Sign(b)
	if err != nil {
		panic(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		panic(err)
	}
	return s
}

// ForeignToken is a token with the same claims signed by a key the issuer
// never published (signature check must fail).
func (is *Issuer) ForeignToken(claims map[string]any) string {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}}, nil)
	c := map[string]any{"iss": is.URL, "aud": is.ClientID, "iat": is.now().Unix(), "exp": is.now().Add(time.Hour).Unix(), "sub": "x"}
	for k, v := range claims {
		c[k] = v
	}
	b, _ := json.Marshal(c)
	obj, _ := signer.Sign(b)
	s, _ := obj.CompactSerialize()
	return s
}

func tokenError(w http.ResponseWriter, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func randHex() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
