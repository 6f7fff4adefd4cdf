package server

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"
)

//go:embed ui/templates/*.html ui/static/*
var uiFS embed.FS

// uiCSP is the pages' Content-Security-Policy: no script at all, styles and
// images from dirsyncd itself (the chart is inline SVG with presentation
// attributes), forms post only to dirsyncd, never framed.
const uiCSP = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'"

var uiFuncs = template.FuncMap{
	"fmtTime": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"join": strings.Join,
	"str":  func(b []byte) string { return string(b) },
	"add":  func(a, b int) int { return a + b },
	"actor": func(names map[string]string, a string) string {
		if n, ok := names[a]; ok {
			return n
		}
		return a
	},
}

func parseTemplates() (map[string]*template.Template, error) {
	base, err := fs.ReadFile(uiFS, "ui/templates/layout.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(uiFS, "ui/templates/*.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		short := strings.TrimSuffix(strings.TrimPrefix(n, "ui/templates/"), ".html")
		if short == "layout" {
			continue
		}
		page, err := fs.ReadFile(uiFS, n)
		if err != nil {
			return nil, err
		}
		t, err := template.New("layout").Funcs(uiFuncs).Parse(string(base))
		if err != nil {
			return nil, fmt.Errorf("parse layout: %w", err)
		}
		if _, err := t.Parse(string(page)); err != nil {
			return nil, fmt.Errorf("parse %s: %w", n, err)
		}
		out[short] = t
	}
	return out, nil
}

// uiPage is what every template gets.
type uiPage struct {
	Title string
	Me    *Me
	CSRF  string
	Data  any
	Error string
}

func (s *Server) setupUI() {
	tpl, err := parseTemplates()
	if err != nil {
		panic("server: embedded templates: " + err.Error()) // a build defect, caught by every UI test
	}
	s.adm.templates = tpl
	static, _ := fs.Sub(uiFS, "ui/static")
	fileServer := http.StripPrefix("/ui/static/", http.FileServer(http.FS(static)))
	hsts := s.adm.cookies != nil && s.adm.cookies.secure
	s.mux.Handle("GET /ui/static/", route("GET /ui/static/", uiHeaders(false, hsts, fileServer)))
	page := func(pattern string, h func(http.ResponseWriter, *http.Request, *caller, sessionData)) {
		s.mux.Handle(pattern, route(pattern, uiHeaders(true, hsts, s.uiAuth(h))))
	}
	page("GET /ui/{$}", func(w http.ResponseWriter, r *http.Request, c *caller, _ sessionData) {
		to := "/ui/users"
		if c.p.Has("admin:read") {
			to = "/ui/runs"
		}
		http.Redirect(w, r, to, http.StatusFound)
	})
	s.mux.Handle("GET /ui/login", route("GET /ui/login", uiHeaders(true, hsts, http.HandlerFunc(s.uiLogin))))
	s.mux.Handle("GET /ui/callback", route("GET /ui/callback", uiHeaders(true, hsts, http.HandlerFunc(s.uiCallback))))
	page("POST /ui/logout", s.uiLogout)
	page("GET /ui/runs", s.uiRuns)
	page("GET /ui/runs/{id}", s.uiRun)
	page("GET /ui/runs/{id}/plan", s.uiPlan)
	page("POST /ui/runs/{id}/approve", s.uiApprove)
	page("GET /ui/users", s.uiUsers)
	page("GET /ui/users/{id}", s.uiUser)
	page("POST /ui/users/{id}/grants", s.uiGrant)
	page("POST /ui/users/{id}/revoke", s.uiRevoke)
	page("GET /ui/audit", s.uiAudit)
}

// uiHeaders sets the pages' security headers; noStore for everything
// that may show personal data (every page but the static assets). hsts
// (the session cookie is Secure, i.e. not oidc.insecureCookies) adds
// Strict-Transport-Security for a year: the pages are then only ever used
// over HTTPS, directly or behind a TLS-terminating proxy, and browsers
// ignore the header on plain HTTP (RFC 6797 8.1).
func uiHeaders(noStore, hsts bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if hsts {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		h.Set("Content-Security-Policy", uiCSP)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if noStore {
			setNoStore(w)
		}
		next.ServeHTTP(w, r)
	})
}

// setNoStore keeps personal data out of caches.
func setNoStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

// uiAuth requires a valid session: without one, GETs are sent to sign in
// (and back); a POST without a valid CSRF token (or from another origin)
// is refused with 403.
func (s *Server) uiAuth(h func(http.ResponseWriter, *http.Request, *caller, sessionData)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.adm.cookies == nil {
			s.uiError(w, r, nil, http.StatusServiceUnavailable, "Sign-in is not configured (oidc.issuer).")
			return
		}
		sd, ok := s.adm.cookies.session(r)
		if ok {
			revoked, err := s.sessionRevoked(r.Context(), sd)
			if err != nil {
				s.internalPage(w, r, "check session", err)
				return
			}
			if revoked { // signed out: a copy of the cookie is no session
				s.adm.cookies.clearCookie(w, sessionCookie, "/")
				ok = false
			}
		}
		if !ok {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/ui/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusFound)
				return
			}
			s.logRefusal(r, &authFailure{status: http.StatusUnauthorized, code: "no_session", reason: "post without a session"})
			s.uiError(w, r, nil, http.StatusUnauthorized, "Your session has ended: sign in again.")
			return
		}
		if r.Method == http.MethodPost {
			// Parse the form here: PostFormValue drops the error, and a body
			// past the limit would read as a missing CSRF token.
			if err := r.ParseForm(); err != nil {
				if isTooLarge(err) {
					s.uiError(w, r, nil, http.StatusRequestEntityTooLarge, "The form is too large.")
				} else {
					s.uiError(w, r, nil, http.StatusBadRequest, "The form could not be read.")
				}
				return
			}
			if o := r.Header.Get("Origin"); o != "" && o != "null" && !sameOrigin(o, r) {
				s.logRefusal(r, &authFailure{status: http.StatusForbidden, code: "csrf", reason: "cross-origin post"})
				s.uiError(w, r, nil, http.StatusForbidden, "This form was posted from another site.")
				return
			}
			if !s.adm.cookies.checkCSRF(sd, r.PostFormValue("csrf")) {
				s.logRefusal(r, &authFailure{status: http.StatusForbidden, code: "csrf", reason: "missing or wrong CSRF token"})
				s.uiError(w, r, nil, http.StatusForbidden, "The form's security token is missing or wrong: reload the page and try again.")
				return
			}
		}
		c, f := s.callerFor(r.Context(), sd.ID)
		if f != nil {
			s.logRefusal(r, f)
			s.uiError(w, r, nil, f.status, f.message)
			return
		}
		recordOf(r.Context()).principal = c.p.Name
		if s.rateLimited(w, r, c.p) {
			return
		}
		h(w, r.WithContext(withCaller(r.Context(), c)), c, sd)
	})
}

// sameOrigin compares an Origin header with the request's own host.
func sameOrigin(origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

func (s *Server) me(c *caller) *Me {
	if c == nil {
		return nil
	}
	return &Me{Actor: c.actor(), Kind: c.p.Kind, UserID: c.user.ID, UserName: c.user.UserName, Support: c.support(), Manages: c.managed()}
}

// render writes a page; the template runs into a buffer so a template
// error never sends half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, p uiPage) {
	t, ok := s.adm.templates[name]
	if !ok {
		s.log.Error("no template", zap.String("template", name))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "layout", p); err != nil {
		s.log.Error("render", zap.String("template", name), zap.Error(err), reqField(r))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

func (s *Server) uiError(w http.ResponseWriter, r *http.Request, c *caller, status int, msg string) {
	p := uiPage{Title: http.StatusText(status), Me: s.me(c), Error: msg}
	if c != nil && s.adm.cookies != nil {
		// The layout shows a signed-in caller the sign-out form: it needs
		// the session's CSRF token.
		if sd, ok := s.adm.cookies.session(r); ok {
			p.CSRF = s.csrfOf(sd)
		}
	}
	s.render(w, r, status, "error", p)
}

func (s *Server) csrfOf(sd sessionData) string { return s.adm.cookies.csrfToken(sd) }

func errField(err error) zap.Field       { return zap.Error(err) }
func reqField(r *http.Request) zap.Field { return zap.String("request_id", RequestID(r.Context())) }
