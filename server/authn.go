package server

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/dirsyncd/dirsyncd/auth"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/webauth"
)

// The grant that makes a signed-in user a firm admin (configs/catalogue.yaml).
const (
	ManagerService = "manage-users"
	ManagerRole    = "firm-user-manager"
)

// OIDC verifies bearer tokens and runs the browser code flow
// (webauth.Provider implements it).
type OIDC interface {
	VerifyToken(ctx context.Context, raw string) (webauth.Identity, error)
	AuthCodeURL(ctx context.Context, state, nonce, verifier string) (string, error)
	Exchange(ctx context.Context, code, verifier, nonce string) (webauth.Identity, error)
}

// caller is an authenticated caller of the admin API or the pages, with
// what the permission rules (authz.go) need.
type caller struct {
	p auth.Principal
	// user is the signed-in dirsyncd user (OIDC); zero for static tokens
	// and for support identities that are no dirsyncd user.
	user directory.User
	// firms are the firms where user holds the Firm User Manager role.
	firms map[string]bool
	// identity is the OIDC identity (sessions keep it).
	identity webauth.Identity
}

// actor is the audit actor of c's changes (auth.Principal.Actor, so runs
// triggered through the scheduler carry the same one): "admin:<token
// name>" for static tokens, "admin:<user id>" for a signed-in dirsyncd
// user and "admin:oidc:<claim>" for a support identity that is no
// dirsyncd user.
func (c *caller) actor() string { return c.p.Actor() }

// support: every firm, admin roles included.
func (c *caller) support() bool { return c.p.Has(auth.ScopeSupport) }

// authFailure is a refusal to authenticate.
type authFailure struct {
	status        int
	code, message string
	reason        string // logged, never shown; never holds a token
}

func (f *authFailure) write(w http.ResponseWriter) {
	if f.status == http.StatusUnauthorized {
		hdr := `Bearer realm="dirsyncd"`
		if f.code == "invalid_token" {
			hdr += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", hdr)
		writeError(w, f.status, "unauthenticated", f.message)
		return
	}
	writeError(w, f.status, f.code, f.message)
}

// authenticateBearer checks tok against the static tokens, then (when
// configured) as an OIDC token of the issuer.
func (s *Server) authenticateBearer(ctx context.Context, tok string) (*caller, *authFailure) {
	if p, ok := s.verifier.Verify(tok); ok {
		return &caller{p: p}, nil
	}
	if s.adm == nil || s.adm.oidc == nil || strings.Count(tok, ".") != 2 {
		return nil, &authFailure{status: http.StatusUnauthorized, code: "invalid_token", message: "the bearer token is not valid",
			reason: "unknown static token"}
	}
	id, err := s.adm.oidc.VerifyToken(ctx, tok)
	if errors.Is(err, webauth.ErrInvalid) {
		return nil, &authFailure{status: http.StatusUnauthorized, code: "invalid_token", message: "the bearer token is not valid",
			reason: err.Error()}
	}
	if err != nil {
		return nil, &authFailure{status: http.StatusServiceUnavailable, code: "idp_unavailable",
			message: "the identity provider cannot be reached; try again", reason: err.Error()}
	}
	return s.callerFor(ctx, id)
}

// callerFor maps a verified identity to a dirsyncd user (by e-mail when
// the user claim is "email", otherwise by userName) and loads the firms
// the user manages: those of their own firms (firmsOf) where they hold
// the Firm User Manager role. A support identity need not be a dirsyncd user.
func (s *Server) callerFor(ctx context.Context, id webauth.Identity) (*caller, *authFailure) {
	c := &caller{identity: id, firms: map[string]bool{}}
	var u directory.User
	var err error
	if s.adm.userClaim == "email" {
		u, err = s.adm.store.GetUserByEmail(ctx, id.Claim)
	} else {
		u, err = s.adm.store.GetUserByUserName(ctx, id.Claim)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		if !id.Support {
			return nil, &authFailure{status: http.StatusForbidden, code: "no_account",
				message: "the signed-in identity is not a dirsyncd user", reason: "no user for the identity's claim"}
		}
	case err != nil:
		return nil, &authFailure{status: http.StatusInternalServerError, code: "internal", message: "internal error",
			reason: "look up user: " + err.Error()}
	case !u.Active || u.DeletedAt != nil:
		if !id.Support {
			return nil, &authFailure{status: http.StatusForbidden, code: "account_inactive",
				message: "the signed-in user is inactive", reason: "inactive user " + u.ID}
		}
	default:
		c.user = u
	}
	c.p = auth.Principal{Kind: "oidc", Name: "oidc:" + id.Claim}
	if c.user.ID != "" {
		c.p.Name = c.user.ID
		gs, err := s.adm.store.ListGrants(ctx, store.GrantQuery{UserID: c.user.ID, Service: ManagerService, Role: ManagerRole})
		if err != nil {
			return nil, &authFailure{status: http.StatusInternalServerError, code: "internal", message: "internal error",
				reason: "list grants: " + err.Error()}
		}
		if len(gs) > 0 {
			// One's own firm only: a manager who left a firm keeps a manual
			// grant there (reconcile removes manual grants only when the
			// user is deprovisioned) but manages no one there.
			own, err := firmsOf(ctx, s.adm.store, c.user)
			if err != nil {
				return nil, &authFailure{status: http.StatusInternalServerError, code: "internal", message: "internal error",
					reason: "user firms: " + err.Error()}
			}
			for _, g := range gs {
				if own[g.FirmNumber] {
					c.firms[g.FirmNumber] = true
				}
			}
		}
	}
	if id.Support {
		c.p.Scopes = []string{auth.ScopeSupport}
	}
	return c, nil
}

// logRefusal logs why a request was refused: never the token.
func (s *Server) logRefusal(r *http.Request, f *authFailure) {
	s.log.Info("refused", zap.Int("status", f.status), zap.String("code", f.code), zap.String("reason", f.reason),
		zap.String("path", r.URL.Path), zap.String("request_id", RequestID(r.Context())))
}

type callerKey struct{}

func withCaller(ctx context.Context, c *caller) context.Context {
	return auth.WithPrincipal(context.WithValue(ctx, callerKey{}, c), c.p)
}

func callerFrom(ctx context.Context) *caller {
	c, _ := ctx.Value(callerKey{}).(*caller)
	return c
}

// apiAuth authenticates an admin API request by bearer token (static or
// OIDC) and applies the caller's rate limit; the handler checks the
// permission rules itself (authz.go).
func (s *Server) apiAuth(h func(w http.ResponseWriter, r *http.Request, c *caller)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := auth.BearerToken(r)
		if !ok {
			f := &authFailure{status: http.StatusUnauthorized, message: "a bearer token is required", reason: "no bearer token"}
			s.logRefusal(r, f)
			f.write(w)
			return
		}
		c, f := s.authenticateBearer(r.Context(), tok)
		if f != nil {
			s.logRefusal(r, f)
			f.write(w)
			return
		}
		recordOf(r.Context()).principal = c.p.Name
		if s.rateLimited(w, r, c.p) {
			return
		}
		h(w, r.WithContext(withCaller(r.Context(), c)), c)
	})
}

// forbid answers 403 and logs the refusal.
func (s *Server) forbid(w http.ResponseWriter, r *http.Request, msg string) {
	s.logRefusal(r, &authFailure{status: http.StatusForbidden, code: "forbidden", reason: msg})
	writeError(w, http.StatusForbidden, "forbidden", msg)
}
