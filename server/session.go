package server

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/dirsyncd/dirsyncd/webauth"
)

// Cookies of the pages. The session cookie is HttpOnly, Secure (unless
// oidc.insecureCookies in development) and SameSite=Lax (the sign-in
// callback arrives as a top-level navigation from the issuer); every form
// carries a CSRF token bound to the session, so Lax is not what stops
// cross-site posts.
const (
	sessionCookie = "dirsyncd_session"
	loginCookie   = "dirsyncd_login"
	loginTTL      = 10 * time.Minute
)

// sessionData is what the signed session cookie holds. It carries no
// secret: the identity (re-mapped to the user and their grants on every
// request, so a revoked role takes effect at once), a random id the CSRF
// token and the logout (sessionRef) are bound to, and the expiry.
type sessionData struct {
	SID     string           `json:"sid"`
	ID      webauth.Identity `json:"id"`
	Expires int64            `json:"exp"`
}

// sessionRef is the audit object id of sd's logout (the revocation
// uiAuth looks for): a hash of the session id, so the log never holds the
// id itself.
func sessionRef(sd sessionData) string {
	h := sha256.Sum256([]byte("dirsyncd-session\x00" + sd.SID))
	return "session:" + hex.EncodeToString(h[:16])
}

// loginState is the short-lived cookie of a sign-in in progress.
type loginState struct {
	State    string `json:"state"`
	Nonce    string `json:"nonce"`
	Verifier string `json:"verifier"`
	Next     string `json:"next"`
	Expires  int64  `json:"exp"`
}

// cookieCodec signs cookie values with HMAC-SHA256 under the session key.
type cookieCodec struct {
	key    []byte
	secure bool
	ttl    time.Duration
	now    func() time.Time
}

var errBadCookie = errors.New("bad cookie")

func (c *cookieCodec) mac(purpose string, b []byte) []byte {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(purpose + "\x00"))
	m.Write(b)
	return m.Sum(nil)
}

func (c *cookieCodec) encode(purpose string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b) + "." + base64.RawURLEncoding.EncodeToString(c.mac(purpose, b)), nil
}

func (c *cookieCodec) decode(purpose, s string, v any) error {
	body, sig, ok := strings.Cut(s, ".")
	if !ok {
		return errBadCookie
	}
	b, err1 := base64.RawURLEncoding.DecodeString(body)
	m, err2 := base64.RawURLEncoding.DecodeString(sig)
	if err1 != nil || err2 != nil || !hmac.Equal(m, c.mac(purpose, b)) {
		return errBadCookie
	}
	return json.Unmarshal(b, v)
}

func (c *cookieCodec) setCookie(w http.ResponseWriter, name, value, path string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: path, MaxAge: int(maxAge.Seconds()),
		HttpOnly: true, Secure: c.secure, SameSite: http.SameSiteLaxMode})
}

func (c *cookieCodec) clearCookie(w http.ResponseWriter, name, path string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: path, MaxAge: -1, HttpOnly: true, Secure: c.secure,
		SameSite: http.SameSiteLaxMode})
}

// newSession returns the cookie value of a fresh session for id.
func (c *cookieCodec) newSession(id webauth.Identity) (string, error) {
	return c.encode("session", sessionData{SID: randomHex(16), ID: id, Expires: c.now().Add(c.ttl).Unix()})
}

// session reads and checks the request's session cookie.
func (c *cookieCodec) session(r *http.Request) (sessionData, bool) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return sessionData{}, false
	}
	var sd sessionData
	if c.decode("session", ck.Value, &sd) != nil || sd.SID == "" || c.now().Unix() >= sd.Expires {
		return sessionData{}, false
	}
	return sd, true
}

// csrfToken is the form token of a session: HMAC of its id.
func (c *cookieCodec) csrfToken(sd sessionData) string {
	return hex.EncodeToString(c.mac("csrf", []byte(sd.SID)))
}

// checkCSRF compares the form's token with the session's in constant time.
func (c *cookieCodec) checkCSRF(sd sessionData, got string) bool {
	want := c.csrfToken(sd)
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
