package server

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/mapping"
	"github.com/dirsyncd/dirsyncd/store"
)

type usersData struct {
	Q, Firm, Status string
	Firms           []string // the caller's firms (firm admins)
	List            UserList
	NextURL         string
}

func (s *Server) uiUsers(w http.ResponseWriter, r *http.Request, c *caller, sd sessionData) {
	q := r.URL.Query()
	d := usersData{Q: q.Get("q"), Firm: q.Get("firm"), Status: q.Get("status"), Firms: c.managed()}
	status := mapping.Status(d.Status)
	if status != "" && status != mapping.StatusComplete && status != mapping.StatusIncomplete {
		s.uiError(w, r, c, http.StatusBadRequest, `"status" must be Complete or Incomplete`)
		return
	}
	offset, _ := strconv.Atoi(q.Get("offset"))
	offset = max(offset, 0)
	var firms []string
	switch {
	case c.seesAll():
		if d.Firm != "" {
			firms = []string{d.Firm}
		}
	case len(c.firms) == 0:
		s.logRefusal(r, &authFailure{status: http.StatusForbidden, code: "forbidden", reason: "not a firm admin"})
		s.uiError(w, r, c, http.StatusForbidden, "You do not manage the users of any firm.")
		return
	case d.Firm != "" && !c.firms[d.Firm]:
		s.logRefusal(r, &authFailure{status: http.StatusForbidden, code: "forbidden", reason: "other firm"})
		s.uiError(w, r, c, http.StatusForbidden, "You may see only the users of firm "+joinFirms(c)+".")
		return
	case d.Firm != "":
		firms = []string{d.Firm}
	default:
		firms = c.managed()
	}
	list, err := s.findUsers(r.Context(), d.Q, firms, status, offset, defaultLimit)
	if err != nil {
		s.internalPage(w, r, "search users", err)
		return
	}
	d.List = list
	if list.NextOffset > 0 {
		d.NextURL = "/ui/users?q=" + urlQ(d.Q) + "&firm=" + urlQ(d.Firm) + "&status=" + urlQ(d.Status) + "&offset=" + strconv.Itoa(list.NextOffset)
	}
	s.render(w, r, http.StatusOK, "users", uiPage{Title: "Users", Me: s.me(c), CSRF: s.csrfOf(sd), Data: d})
}

// grantRow is a grant on the user page with its explanation.
type grantRow struct {
	directory.Grant
	Scope     string
	Why       []string
	CanRevoke bool
}

type roleChoice struct {
	Service, Role, Label string
}

type userData struct {
	Detail   UserDetail
	Grants   []grantRow
	Firms    []string // firms the caller may grant in for this user
	Roles    []roleChoice
	Offices  map[string][]directory.Office
	History  []audit.Event
	Explain  *mapping.Explanation
	Messages []string
	Names    map[string]string // audit actor -> "userName (actor)"
}

func (s *Server) uiUser(w http.ResponseWriter, r *http.Request, c *caller, sd sessionData) {
	s.renderUser(w, r, c, sd, http.StatusOK, "")
}

func (s *Server) renderUser(w http.ResponseWriter, r *http.Request, c *caller, sd sessionData, status int, msg string) {
	u, firms, ok := s.uiTarget(w, r, c, r.PathValue("id"))
	if !ok {
		return
	}
	ctx := r.Context()
	det, err := s.userDetail(ctx, u)
	if err != nil {
		s.internalPage(w, r, "user detail", err)
		return
	}
	if !c.seesAll() {
		det.Explain = scopeExplanation(det.Explain, c.firms)
		det.Grants = slices.DeleteFunc(det.Grants, func(g directory.Grant) bool { return !c.firms[g.FirmNumber] })
	}
	d := userData{Detail: det, Explain: det.Explain, Offices: map[string][]directory.Office{}}
	why := map[string][]string{}
	if det.Explain != nil {
		for _, fx := range det.Explain.Firms {
			for _, rx := range fx.Roles {
				why[fx.Number+"/"+rx.Role] = rx.Why
			}
		}
	}
	for _, g := range det.Grants {
		row := grantRow{Grant: g, Why: why[g.FirmNumber+"/"+g.Service+"/"+g.Role]}
		switch {
		case g.AllOffices:
			row.Scope = "all offices"
		case len(g.Offices) == 0:
			row.Scope = "no office"
		default:
			row.Scope = strings.Join(g.Offices, ", ")
		}
		if role, ok := s.adm.cat.RoleOf(g.Service, g.Role); ok {
			row.CanRevoke = c.grantDecision(firms, g.FirmNumber, role) == ""
		} else {
			row.CanRevoke = c.support()
		}
		d.Grants = append(d.Grants, row)
	}
	for f := range firms {
		if c.seesAll() && (c.support() || c.p.Has("admin:write")) || c.firms[f] {
			d.Firms = append(d.Firms, f)
		}
	}
	slices.Sort(d.Firms)
	for _, f := range d.Firms {
		offs, err := s.adm.store.ListOffices(ctx, f)
		if err != nil {
			s.internalPage(w, r, "list offices", err)
			return
		}
		d.Offices[f] = offs
	}
	for _, svc := range s.adm.cat.Services {
		for _, role := range svc.Roles {
			if role.Admin && !c.support() {
				continue // never offered to firm admins: the API refuses it too
			}
			d.Roles = append(d.Roles, roleChoice{Service: svc.Slug, Role: role.Slug, Label: svc.Name + ": " + role.Name})
		}
	}
	d.History, err = s.recentAudit(r, c, u.ID, 100)
	if err != nil {
		s.internalPage(w, r, "user history", err)
		return
	}
	d.Names = s.actorNames(ctx, d.History)
	if msg != "" {
		d.Messages = []string{msg}
	}
	s.render(w, r, status, "user", uiPage{Title: "User " + u.UserName, Me: s.me(c), CSRF: s.csrfOf(sd), Data: d})
}

// uiTarget is loadTarget for pages.
func (s *Server) uiTarget(w http.ResponseWriter, r *http.Request, c *caller, id string) (directory.User, map[string]bool, bool) {
	rec := &pageErrorWriter{ResponseWriter: w}
	u, firms, ok := s.loadTarget(rec, r, c, id)
	if !ok {
		// loadTarget wrote a JSON error into rec's header only: show a page.
		msg := "You may see only the users of firm " + joinFirms(c) + "."
		switch rec.code {
		case http.StatusNotFound:
			msg = "No user with this id."
		case http.StatusInternalServerError:
			msg = "Internal error (request id " + RequestID(r.Context()) + ")."
		}
		s.uiError(w, r, c, rec.code, msg)
	}
	return u, firms, ok
}

// pageErrorWriter swallows a JSON error so the page can render its own.
type pageErrorWriter struct {
	http.ResponseWriter
	code int
	hdr  http.Header
}

func (p *pageErrorWriter) Header() http.Header {
	if p.hdr == nil {
		p.hdr = http.Header{}
	}
	return p.hdr
}
func (p *pageErrorWriter) WriteHeader(code int)        { p.code = code }
func (p *pageErrorWriter) Write(b []byte) (int, error) { return len(b), nil }

func (s *Server) uiGrant(w http.ResponseWriter, r *http.Request, c *caller, sd sessionData) {
	svc, role, _ := strings.Cut(r.PostFormValue("role"), "/")
	req := GrantRequest{FirmNumber: r.PostFormValue("firmNumber"), Service: svc, Role: role,
		AllOffices: r.PostFormValue("allOffices") == "on", Offices: r.PostForm["offices"]}
	_, _, err := s.putGrant(r, c, r.PathValue("id"), req)
	s.afterChange(w, r, c, sd, err)
}

func (s *Server) uiRevoke(w http.ResponseWriter, r *http.Request, c *caller, sd sessionData) {
	err := s.revokeGrant(r, c, r.PathValue("id"), r.PostFormValue("firmNumber"), r.PostFormValue("service"), r.PostFormValue("role"))
	s.afterChange(w, r, c, sd, err)
}

// afterChange redirects back to the user page (post/redirect/get), or
// shows the refusal.
func (s *Server) afterChange(w http.ResponseWriter, r *http.Request, c *caller, sd sessionData, err error) {
	if err == nil {
		http.Redirect(w, r, "/ui/users/"+r.PathValue("id"), http.StatusSeeOther)
		return
	}
	rec := &pageErrorWriter{ResponseWriter: w}
	s.grantError(rec, r, err)
	if rec.code == http.StatusBadRequest {
		s.renderUser(w, r, c, sd, http.StatusBadRequest, err.Error())
		return
	}
	msg := err.Error() // a refusal or a missing grant: written for the admin
	if rec.code == http.StatusInternalServerError {
		msg = "Internal error (request id " + RequestID(r.Context()) + ")." // the store's error is logged only
	}
	s.uiError(w, r, c, rec.code, msg)
}

type auditData struct {
	User, Actor, Action, Since, Until string
	Events                            []audit.Event
	NextURL, CSVURL                   string
	Names                             map[string]string
}

func (s *Server) uiAudit(w http.ResponseWriter, r *http.Request, c *caller, sd sessionData) {
	f, bad := parseAuditFilter(r, maxLimit)
	if bad != "" {
		s.uiError(w, r, c, http.StatusBadRequest, bad)
		return
	}
	q := r.URL.Query()
	d := auditData{User: f.ObjectID, Actor: f.Actor, Action: f.Action, Since: q.Get("since"), Until: q.Get("until")}
	if !c.seesAll() {
		if f.ObjectID == "" {
			s.logRefusal(r, &authFailure{status: http.StatusForbidden, code: "forbidden", reason: "whole audit log"})
			s.uiError(w, r, c, http.StatusForbidden, "Open a user of your firm to see their history.")
			return
		}
		if _, _, ok := s.uiTarget(w, r, c, f.ObjectID); !ok {
			return
		}
	}
	asCSV := q.Get("format") == "csv"
	if asCSV {
		if f, bad = parseAuditFilter(r, maxAuditExport); bad != "" {
			s.uiError(w, r, c, http.StatusBadRequest, bad)
			return
		}
		if q.Get("limit") == "" {
			f.Limit = maxAuditExport
		}
	}
	events, err := s.auditEvents(r, c, f)
	if err != nil {
		s.internalPage(w, r, "audit", err)
		return
	}
	if asCSV {
		writeAuditCSV(w, events)
		return
	}
	d.Events = events
	d.Names = s.actorNames(r.Context(), events)
	qs := "user=" + urlQ(d.User) + "&actor=" + urlQ(d.Actor) + "&action=" + urlQ(d.Action) + "&since=" + urlQ(d.Since) + "&until=" + urlQ(d.Until)
	if len(events) == f.Limit {
		d.NextURL = "/ui/audit?" + qs + "&after=" + strconv.FormatInt(events[len(events)-1].Seq, 10)
	}
	d.CSVURL = "/ui/audit?format=csv&" + qs
	s.render(w, r, http.StatusOK, "audit", uiPage{Title: "Audit", Me: s.me(c), CSRF: s.csrfOf(sd), Data: d})
}

func urlQ(v string) string { return url.QueryEscape(v) }

// recentAudit returns the newest n events about one user that c may read
// (caller.auditVisible), newest first. It walks the user's events in order
// keeping the last n (the store reads in sequence order only); a user's
// history is small next to the log.
func (s *Server) recentAudit(r *http.Request, c *caller, userID string, n int) ([]audit.Event, error) {
	ring := make([]audit.Event, 0, n)
	start := 0
	err := s.adm.store.Audit(r.Context(), store.AuditFilter{ObjectID: userID}, func(e audit.Event) error {
		if !c.auditVisible(e) {
			return nil
		}
		if len(ring) < n {
			ring = append(ring, e)
		} else {
			ring[start] = e
			start = (start + 1) % n
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]audit.Event, 0, len(ring))
	for i := len(ring) - 1; i >= 0; i-- {
		out = append(out, ring[(start+i)%len(ring)])
	}
	return out, nil
}

// actorNames labels the actors "admin:<user id>" of events with the
// user's userName, for display; unknown ids keep the bare actor.
func (s *Server) actorNames(ctx context.Context, events []audit.Event) map[string]string {
	out := map[string]string{}
	for _, e := range events {
		id, ok := strings.CutPrefix(e.Actor, "admin:")
		if _, seen := out[e.Actor]; seen || !ok || len(id) != 36 {
			continue
		}
		if u, err := s.adm.store.GetUser(ctx, id); err == nil {
			out[e.Actor] = u.UserName + " (" + e.Actor + ")"
		} else {
			out[e.Actor] = e.Actor
		}
	}
	return out
}
