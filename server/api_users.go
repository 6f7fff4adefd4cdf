package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/mapping"
	"github.com/dirsyncd/dirsyncd/store"
)

// Me is GET /api/v1/me: who the caller is and what they may do.
type Me struct {
	Actor    string   `json:"actor"`
	Kind     string   `json:"kind"`
	UserID   string   `json:"userId,omitempty"`
	UserName string   `json:"userName,omitempty"`
	Support  bool     `json:"support"`
	Manages  []string `json:"manages"`
}

func (s *Server) getMe(w http.ResponseWriter, r *http.Request, c *caller) {
	writeJSON(w, http.StatusOK, Me{Actor: c.actor(), Kind: c.p.Kind, UserID: c.user.ID, UserName: c.user.UserName,
		Support: c.support(), Manages: c.managed()})
}

// UserSummary is one row of a user search.
type UserSummary struct {
	ID          string         `json:"id"`
	UserName    string         `json:"userName"`
	Email       string         `json:"email,omitempty"`
	DisplayName string         `json:"displayName,omitempty"`
	FirmNumber  string         `json:"firmNumber,omitempty"`
	Active      bool           `json:"active"`
	Status      mapping.Status `json:"status"`
}

// UserList is the GET /api/v1/users response. NextOffset, when set, is
// the offset of the next page.
type UserList struct {
	Users      []UserSummary `json:"users"`
	NextOffset int           `json:"nextOffset,omitempty"`
}

// maxStatusScan bounds how many users one status-filtered search reads.
const maxStatusScan = 5000

// searchUsers: GET /api/v1/users?q=&firm=&status=&offset=&limit=. q
// matches userName, e-mail and display name (contains, case-insensitive);
// firm matches the primary firm or a firm profile; status is Complete or
// Incomplete.
func (s *Server) searchUsers(w http.ResponseWriter, r *http.Request, c *caller) {
	q := r.URL.Query()
	limit, ok := parseLimit(q.Get("limit"))
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid_parameter", `"limit" must be a positive integer`)
		return
	}
	offset := 0
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "invalid_parameter", `"offset" must be a non-negative integer`)
			return
		}
		offset = n
	}
	status := mapping.Status(q.Get("status"))
	if status != "" && status != mapping.StatusComplete && status != mapping.StatusIncomplete {
		writeError(w, http.StatusBadRequest, "invalid_parameter", `"status" must be Complete or Incomplete`)
		return
	}
	firm := q.Get("firm")
	var firms []string
	switch {
	case c.seesAll():
		if firm != "" {
			firms = []string{firm}
		}
	case len(c.firms) == 0:
		s.forbid(w, r, "you do not manage the users of any firm")
		return
	case firm != "" && !c.firms[firm]:
		s.forbid(w, r, "you may search only the users of firm "+strings.Join(c.managed(), ", "))
		return
	case firm != "":
		firms = []string{firm}
	default:
		firms = c.managed()
	}
	out, err := s.findUsers(r.Context(), q.Get("q"), firms, status, offset, limit)
	if err != nil {
		s.internal(w, r, "search users", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) findUsers(ctx context.Context, text string, firms []string, status mapping.Status, offset, limit int) (UserList, error) {
	out := UserList{Users: []UserSummary{}}
	scanned := 0
	for {
		batch := limit
		if status != "" {
			batch = max(limit, 200)
		}
		page, err := s.adm.store.SearchUsers(ctx, store.UserSearch{Text: text, Firms: firms, Offset: offset, Limit: batch})
		if err != nil {
			return out, err
		}
		for i, u := range page.Items {
			st, err := s.statusOf(ctx, u.ID)
			if err != nil {
				return out, err
			}
			if status != "" && st != status {
				continue
			}
			out.Users = append(out.Users, UserSummary{ID: u.ID, UserName: u.UserName, Email: u.Email, DisplayName: u.DisplayName,
				FirmNumber: u.FirmNumber, Active: u.Active, Status: st})
			if len(out.Users) == limit {
				if next := offset + i + 1; int64(next) < page.Total {
					out.NextOffset = next
				}
				return out, nil
			}
		}
		offset += len(page.Items)
		scanned += len(page.Items)
		if len(page.Items) < batch || int64(offset) >= page.Total {
			return out, nil
		}
		if scanned >= maxStatusScan {
			out.NextOffset = offset // more to scan: the client asks again from here
			return out, nil
		}
	}
}

func (s *Server) statusOf(ctx context.Context, userID string) (mapping.Status, error) {
	gs, err := s.adm.store.ListGrants(ctx, store.GrantQuery{UserID: userID})
	if err != nil {
		return "", err
	}
	return s.adm.status(gs), nil
}

// UserDetail is GET /api/v1/users/{id}.
type UserDetail struct {
	User        directory.User             `json:"user"`
	Status      mapping.Status             `json:"status"`
	Memberships []directory.FirmMembership `json:"memberships"`
	Links       []directory.SourceLink     `json:"links"`
	Grants      []directory.Grant          `json:"grants"`
	Explain     *mapping.Explanation       `json:"explain,omitempty"`
}

func (s *Server) userDetail(ctx context.Context, u directory.User) (UserDetail, error) {
	d := UserDetail{User: u}
	var err error
	if d.Memberships, err = s.adm.store.ListFirmMemberships(ctx, u.ID); err != nil {
		return d, err
	}
	if d.Links, err = s.adm.store.ListUserLinks(ctx, u.ID); err != nil {
		return d, err
	}
	if d.Grants, err = s.adm.store.ListGrants(ctx, store.GrantQuery{UserID: u.ID}); err != nil {
		return d, err
	}
	d.Status = s.adm.status(d.Grants)
	if s.adm.explainer != nil {
		x, err := s.adm.explainer.Explain(ctx, u.ID)
		if err != nil {
			return d, err
		}
		d.Explain = &x
	}
	if d.Memberships == nil {
		d.Memberships = []directory.FirmMembership{}
	}
	if d.Links == nil {
		d.Links = []directory.SourceLink{}
	}
	if d.Grants == nil {
		d.Grants = []directory.Grant{}
	}
	return d, nil
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request, c *caller) {
	u, _, ok := s.loadTarget(w, r, c, r.PathValue("id"))
	if !ok {
		return
	}
	d, err := s.userDetail(r.Context(), u)
	if err != nil {
		s.internal(w, r, "user detail", err)
		return
	}
	if !c.seesAll() {
		d.Explain = scopeExplanation(d.Explain, c.firms)
		d.Grants = slices.DeleteFunc(d.Grants, func(g directory.Grant) bool { return !c.firms[g.FirmNumber] })
		d.Memberships = slices.DeleteFunc(d.Memberships, func(m directory.FirmMembership) bool { return !c.firms[m.FirmNumber] })
	}
	writeJSON(w, http.StatusOK, d)
}

// scopeExplanation drops what concerns firms the caller does not manage
// (a multi-firm user's other firms are no business of this firm's admin).
func scopeExplanation(x *mapping.Explanation, firms map[string]bool) *mapping.Explanation {
	if x == nil {
		return nil
	}
	y := *x
	y.Firms = slices.DeleteFunc(slices.Clone(x.Firms), func(f mapping.FirmExplanation) bool { return !firms[f.Number] })
	y.Other = nil
	return &y
}

// GrantRequest is the body of POST /api/v1/users/{id}/grants: it gives a
// role, or replaces its office scope when the user holds it already.
type GrantRequest struct {
	FirmNumber string   `json:"firmNumber"`
	Service    string   `json:"service"`
	Role       string   `json:"role"`
	AllOffices bool     `json:"allOffices"`
	Offices    []string `json:"offices"`
}

// fieldError is a 400 naming the field.
type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return fmt.Sprintf("%q: %s", e.field, e.msg) }

// forbidden is a 403 found inside a transaction.
type forbidden struct{ msg string }

func (e *forbidden) Error() string { return e.msg }

func (s *Server) postGrant(w http.ResponseWriter, r *http.Request, c *caller) {
	var req GrantRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	g, created, err := s.putGrant(r, c, r.PathValue("id"), req)
	if s.grantError(w, r, err) {
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	writeJSON(w, code, g)
}

func (s *Server) deleteGrant(w http.ResponseWriter, r *http.Request, c *caller) {
	err := s.revokeGrant(r, c, r.PathValue("id"), r.PathValue("firm"), r.PathValue("service"), r.PathValue("role"))
	if s.grantError(w, r, err) {
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// grantError answers err (if any) and reports whether it did.
func (s *Server) grantError(w http.ResponseWriter, r *http.Request, err error) bool {
	var fe *fieldError
	var fb *forbidden
	var nf *targetMissing
	switch {
	case err == nil:
		return false
	case errors.As(err, &fe):
		writeError(w, http.StatusBadRequest, "invalid_field", fe.Error())
	case errors.As(err, &fb):
		s.forbid(w, r, fb.msg)
	case errors.As(err, &nf):
		writeError(w, http.StatusNotFound, "not_found", nf.msg)
	default:
		s.internal(w, r, "change grant", err)
	}
	return true
}

type targetMissing struct{ msg string }

func (e *targetMissing) Error() string { return e.msg }

// checkTarget reads the target user inside tx and applies the visibility
// rule; the error is a *forbidden or *targetMissing.
func (s *Server) checkTarget(ctx context.Context, tx store.Tx, c *caller, id string) (directory.User, map[string]bool, error) {
	if !c.seesAll() && len(c.firms) == 0 {
		return directory.User{}, nil, &forbidden{"you do not manage the users of any firm"}
	}
	u, err := tx.GetUser(ctx, id)
	if isNotFound(err) || (err == nil && u.DeletedAt != nil) {
		if c.seesAll() {
			return u, nil, &targetMissing{"no user with this id"}
		}
		return u, nil, &forbidden{"you may see only the users of firm " + strings.Join(c.managed(), ", ")}
	}
	if err != nil {
		return u, nil, err
	}
	firms, err := firmsOf(ctx, tx, u)
	if err != nil {
		return u, nil, err
	}
	if !c.canSee(firms) {
		return u, nil, &forbidden{"you may see only the users of firm " + strings.Join(c.managed(), ", ")}
	}
	return u, firms, nil
}

// putGrant applies the rules and writes the grant in one transaction (the
// store audits it with the caller as actor).
func (s *Server) putGrant(r *http.Request, c *caller, userID string, req GrantRequest) (directory.Grant, bool, error) {
	var out directory.Grant
	created := false
	if req.FirmNumber == "" {
		return out, false, &fieldError{"firmNumber", "is required"}
	}
	if req.Service == "" {
		return out, false, &fieldError{"service", "is required"}
	}
	svc, ok := s.adm.cat.Service(req.Service)
	if !ok {
		return out, false, &fieldError{"service", fmt.Sprintf("no service %q in the catalogue", req.Service)}
	}
	if req.Role == "" && svc.AutoGrant && len(svc.Roles) == 1 {
		req.Role = svc.Roles[0].Slug
	}
	role, ok := s.adm.cat.RoleOf(req.Service, req.Role)
	if !ok {
		return out, false, &fieldError{"role", fmt.Sprintf("no role %q in service %q", req.Role, req.Service)}
	}
	if req.AllOffices && len(req.Offices) > 0 {
		return out, false, &fieldError{"offices", "must be empty when allOffices is true"}
	}
	err := s.adm.store.Update(r.Context(), meta(r, c), func(ctx context.Context, tx store.Tx) error {
		u, firms, err := s.checkTarget(ctx, tx, c, userID)
		if err != nil {
			return err
		}
		if why := c.grantDecision(firms, req.FirmNumber, role); why != "" {
			return &forbidden{why}
		}
		firm, err := tx.GetFirm(ctx, req.FirmNumber)
		if isNotFound(err) {
			return &fieldError{"firmNumber", fmt.Sprintf("no firm %q", req.FirmNumber)}
		}
		if err != nil {
			return err
		}
		if !firms[firm.Number] {
			return &fieldError{"firmNumber", fmt.Sprintf("the user is not a member of firm %s", firm.Number)}
		}
		if !role.Eligible(firm.Type) {
			return &fieldError{"role", fmt.Sprintf("%s is not offered to firms of type %s", role.ID(), firm.Type)}
		}
		offices, err := tx.ListOffices(ctx, firm.Number)
		if err != nil {
			return err
		}
		codes := map[string]bool{}
		for _, o := range offices {
			codes[o.Code] = true
		}
		var picked []string
		for _, code := range req.Offices {
			if !codes[code] {
				return &fieldError{"offices", fmt.Sprintf("office %q does not belong to firm %s", code, firm.Number)}
			}
			if !slices.Contains(picked, code) {
				picked = append(picked, code)
			}
		}
		slices.Sort(picked)
		g := directory.Grant{UserID: u.ID, FirmNumber: firm.Number, Service: req.Service, Role: role.Slug,
			AllOffices: req.AllOffices, Offices: picked}
		cur, err := tx.GetGrant(ctx, g.Key())
		switch {
		case isNotFound(err):
			created = true
		case err != nil:
			return err
		default:
			g.Provenance = slices.DeleteFunc(slices.Clone(cur.Provenance), func(p directory.Provenance) bool {
				return p.Kind == directory.ProvManual
			})
		}
		g.Provenance = append(g.Provenance, directory.Provenance{Kind: directory.ProvManual, Ref: c.actor(),
			Detail: "granted in the admin API"})
		if err := tx.PutGrant(ctx, &g); err != nil {
			return err
		}
		out, err = tx.GetGrant(ctx, g.Key())
		return err
	})
	return out, created, err
}

func (s *Server) revokeGrant(r *http.Request, c *caller, userID, firm, service, roleSlug string) error {
	role, ok := s.adm.cat.RoleOf(service, roleSlug)
	if !ok {
		// Unknown roles can still be held (a catalogue change); only support
		// removes those.
		if !c.support() {
			return &fieldError{"role", fmt.Sprintf("no role %q in service %q", roleSlug, service)}
		}
	}
	return s.adm.store.Update(r.Context(), meta(r, c), func(ctx context.Context, tx store.Tx) error {
		u, firms, err := s.checkTarget(ctx, tx, c, userID)
		if err != nil {
			return err
		}
		if role != nil {
			if why := c.grantDecision(firms, firm, role); why != "" {
				return &forbidden{why}
			}
		}
		k := directory.GrantKey{UserID: u.ID, FirmNumber: firm, Service: service, Role: roleSlug}
		if _, err := tx.GetGrant(ctx, k); isNotFound(err) {
			return &targetMissing{"the user does not hold this role in this firm"}
		} else if err != nil {
			return err
		}
		return tx.DeleteGrant(ctx, k)
	})
}
