package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/webauth"
)

// safeNext accepts only a local page path as the place to return to after
// sign-in (no open redirect).
func safeNext(v string) string {
	if strings.HasPrefix(v, "/ui/") && !strings.HasPrefix(v, "//") && !strings.Contains(v, "\\") &&
		!strings.HasPrefix(v, "/ui/login") && !strings.HasPrefix(v, "/ui/callback") {
		return v
	}
	return "/ui/runs"
}

// uiLogin starts the authorization code flow: a random state, nonce and
// PKCE verifier go into a signed cookie valid for 10 minutes; the browser
// goes to the issuer with the state, nonce and the verifier's S256
// challenge.
func (s *Server) uiLogin(w http.ResponseWriter, r *http.Request) {
	if s.adm.oidc == nil || s.adm.cookies == nil {
		s.uiError(w, r, nil, http.StatusServiceUnavailable, "Sign-in is not configured (oidc.issuer).")
		return
	}
	ls := loginState{State: randomHex(16), Nonce: randomHex(16), Verifier: oauth2.GenerateVerifier(),
		Next: safeNext(r.URL.Query().Get("next")), Expires: s.now().Add(loginTTL).Unix()}
	u, err := s.adm.oidc.AuthCodeURL(r.Context(), ls.State, ls.Nonce, ls.Verifier)
	if err != nil {
		s.log.Warn("sign-in: identity provider unreachable", errField(err), reqField(r))
		s.uiError(w, r, nil, http.StatusServiceUnavailable, "The identity provider cannot be reached; try again shortly.")
		return
	}
	v, err := s.adm.cookies.encode("login", ls)
	if err != nil {
		s.internalPage(w, r, "encode login state", err)
		return
	}
	s.adm.cookies.setCookie(w, loginCookie, v, "/ui/callback", loginTTL)
	http.Redirect(w, r, u, http.StatusFound)
}

// uiCallback finishes sign-in: it checks the state against the cookie,
// exchanges the code with the PKCE verifier, verifies the ID token and
// nonce, maps the identity to a user, audits the login and starts the
// session.
func (s *Server) uiCallback(w http.ResponseWriter, r *http.Request) {
	if s.adm.oidc == nil || s.adm.cookies == nil {
		s.uiError(w, r, nil, http.StatusServiceUnavailable, "Sign-in is not configured (oidc.issuer).")
		return
	}
	q := r.URL.Query()
	ck, err := r.Cookie(loginCookie)
	var ls loginState
	if err != nil || s.adm.cookies.decode("login", ck.Value, &ls) != nil || s.now().Unix() >= ls.Expires ||
		subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(ls.State)) != 1 || ls.State == "" {
		s.logRefusal(r, &authFailure{status: http.StatusBadRequest, code: "bad_state", reason: "sign-in state missing, expired or wrong"})
		s.uiError(w, r, nil, http.StatusBadRequest, "This sign-in link is no longer valid: start again.")
		return
	}
	s.adm.cookies.clearCookie(w, loginCookie, "/ui/callback")
	if e := q.Get("error"); e != "" {
		s.logRefusal(r, &authFailure{status: http.StatusUnauthorized, code: "idp_error", reason: "issuer answered " + e})
		s.uiError(w, r, nil, http.StatusUnauthorized, "The identity provider refused the sign-in.")
		return
	}
	id, err := s.adm.oidc.Exchange(r.Context(), q.Get("code"), ls.Verifier, ls.Nonce)
	if err != nil {
		status := http.StatusUnauthorized
		if !errors.Is(err, webauth.ErrInvalid) {
			status = http.StatusServiceUnavailable
		}
		s.logRefusal(r, &authFailure{status: status, code: "exchange", reason: err.Error()})
		s.uiError(w, r, nil, status, "Sign-in failed: start again.")
		return
	}
	c, f := s.callerFor(r.Context(), id)
	if f != nil {
		s.logRefusal(r, f)
		s.uiError(w, r, nil, f.status, f.message)
		return
	}
	// Every login is audited (DOMAIN.md).
	err = s.adm.store.Update(r.Context(), meta(r, c), func(ctx context.Context, tx store.Tx) error {
		obj := c.user.ID
		if obj == "" {
			obj = "oidc:" + id.Claim // a support identity that is no dirsyncd user
		}
		return tx.Record(ctx, "user.login", "user", obj, nil, map[string]any{"via": "oidc", "issuer": id.Issuer,
			"support": id.Support})
	})
	if err != nil {
		s.internalPage(w, r, "audit login", err)
		return
	}
	v, err := s.adm.cookies.newSession(id)
	if err != nil {
		s.internalPage(w, r, "encode session", err)
		return
	}
	s.adm.cookies.setCookie(w, sessionCookie, v, "/", s.adm.cookies.ttl)
	next := ls.Next
	if next == "/ui/runs" && !c.p.Has("admin:read") {
		next = "/ui/users"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// uiLogout ends the session on the server too: the logout is an audit
// event whose object is the session (sessionRef), and uiAuth refuses a
// session with one, so a copy of the cookie stops working on every
// replica and across restarts, not only in this browser.
func (s *Server) uiLogout(w http.ResponseWriter, r *http.Request, c *caller, sd sessionData) {
	s.adm.cookies.clearCookie(w, sessionCookie, "/") // this browser forgets it even if the store fails
	err := s.adm.store.Update(r.Context(), meta(r, c), func(ctx context.Context, tx store.Tx) error {
		return tx.Record(ctx, "session.logout", "session", sessionRef(sd), nil,
			map[string]any{"expires": time.Unix(sd.Expires, 0).UTC()})
	})
	if err != nil {
		s.internalPage(w, r, "audit logout", err)
		return
	}
	s.render(w, r, http.StatusOK, "error", uiPage{Title: "Signed out", Error: "You are signed out."})
}

// sessionRevoked reports whether sd was signed out (uiLogout).
func (s *Server) sessionRevoked(ctx context.Context, sd sessionData) (bool, error) {
	found := false
	err := s.adm.store.Audit(ctx, store.AuditFilter{ObjectID: sessionRef(sd), Action: "session.logout", Limit: 1},
		func(audit.Event) error { found = true; return nil })
	return found, err
}

func (s *Server) internalPage(w http.ResponseWriter, r *http.Request, op string, err error) {
	s.log.Error(op, errField(err), reqField(r))
	s.uiError(w, r, nil, http.StatusInternalServerError, "Internal error (request id "+RequestID(r.Context())+").")
}
