package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/auth"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/mapping"
	"github.com/dirsyncd/dirsyncd/store"
)

// The permission rules (DOMAIN.md "Rules the business states"):
//
//   - support (a token with scope support, or an OIDC identity whose
//     support claim matches): every user of every firm; gives and removes
//     every role, admin roles included; approves held plans.
//   - a static token with admin:read (automation, Prometheus, reports):
//     reads every user, run and audit event; admin:write adds manual grants
//     and revocations of non-admin roles in any firm.
//   - a signed-in user holding manage-users/firm-user-manager in firm F
//     (Firm User Manager) and a member of F themselves (a manager who left
//     F manages no one there, whatever grant remains): sees only users who are members of F (firm
//     profile, or F as primary firm); gives and removes service roles and
//     offices of F to them, themselves included; never an admin role (not
//     even to themselves, and never removes one either); reads the audit
//     history of those users only; no runs.
//   - any other signed-in user: nothing (403).
//
// Refusals are 403, never 404, for objects in another firm's scope; for a
// caller who cannot see every firm an unknown user id is 403 too, so the
// answer never tells whether a user exists elsewhere.

// seesAll: reads users of every firm.
func (c *caller) seesAll() bool { return c.support() || c.p.Has(auth.ScopeAdminRead) }

// managed lists the firms c manages, sorted.
func (c *caller) managed() []string {
	out := make([]string, 0, len(c.firms))
	for f := range c.firms {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// firmsOf returns the firms u belongs to: firm profiles and primary firm.
func firmsOf(ctx context.Context, st interface {
	ListFirmMemberships(ctx context.Context, userID string) ([]directory.FirmMembership, error)
}, u directory.User) (map[string]bool, error) {
	ms, err := st.ListFirmMemberships(ctx, u.ID)
	if err != nil {
		return nil, fmt.Errorf("list memberships of %s: %w", u.ID, err)
	}
	out := map[string]bool{}
	for _, m := range ms {
		out[m.FirmNumber] = true
	}
	if u.FirmNumber != "" {
		out[u.FirmNumber] = true
	}
	return out, nil
}

// canSee reports whether c may read user u (whose firms are given).
func (c *caller) canSee(firms map[string]bool) bool {
	if c.seesAll() {
		return true
	}
	for f := range firms {
		if c.firms[f] {
			return true
		}
	}
	return false
}

// auditVisible reports whether c may read event e from the history of a
// user c can see. Grant and firm-profile events name their firm; for a
// caller who cannot see every firm those of a firm c does not manage are
// left out (a multi-firm user's other firm is no business of this firm's
// admin, as in the user detail), and so is such an event whose firm
// cannot be read.
func (c *caller) auditVisible(e audit.Event) bool {
	if c.seesAll() {
		return true
	}
	if e.ObjectType != "grant" && !strings.HasPrefix(e.Action, "firm_membership.") {
		return true
	}
	var v struct {
		FirmNumber string `json:"firmNumber"`
	}
	for _, b := range []json.RawMessage{e.After, e.Before} {
		if len(b) > 0 && json.Unmarshal(b, &v) == nil && v.FirmNumber != "" {
			return c.firms[v.FirmNumber]
		}
	}
	return false
}

// grantDecision says whether c may give or remove role in firm to a user
// of userFirms: "" when allowed, otherwise why not (a 403).
func (c *caller) grantDecision(userFirms map[string]bool, firm string, role *mapping.Role) string {
	switch {
	case c.support():
		return ""
	case c.p.Kind == "token":
		if !c.p.Has(auth.ScopeAdminWrite) {
			return "this token may not change grants (it needs admin:write)"
		}
		if role.Admin {
			return fmt.Sprintf("%s is an admin role: only the agency's support staff give or remove it", role.ID())
		}
		return ""
	case !c.firms[firm]:
		if len(c.firms) == 0 {
			return "you do not manage the users of any firm"
		}
		return fmt.Sprintf("you manage the users of firm %s only", strings.Join(c.managed(), ", "))
	case !userFirms[firm]:
		return fmt.Sprintf("the user is not a member of firm %s", firm)
	case role.Admin:
		return fmt.Sprintf("%s is an admin role: only the agency's support staff give or remove it", role.ID())
	}
	return ""
}

// loadTarget reads the user of the request path and checks c may see
// them. It answers 403 (never 404) when c may not see every firm and the
// user is unknown or outside c's firms.
func (s *Server) loadTarget(w http.ResponseWriter, r *http.Request, c *caller, id string) (directory.User, map[string]bool, bool) {
	ctx := r.Context()
	if !c.seesAll() && len(c.firms) == 0 {
		s.forbid(w, r, "you do not manage the users of any firm")
		return directory.User{}, nil, false
	}
	u, err := s.adm.store.GetUser(ctx, id)
	if err != nil && !isNotFound(err) {
		s.internal(w, r, "get user", err)
		return directory.User{}, nil, false
	}
	if isNotFound(err) {
		if c.seesAll() {
			writeError(w, http.StatusNotFound, "not_found", "no user with this id")
		} else {
			s.forbid(w, r, "you may see only the users of firm "+strings.Join(c.managed(), ", "))
		}
		return directory.User{}, nil, false
	}
	firms, err := firmsOf(ctx, s.adm.store, u)
	if err != nil {
		s.internal(w, r, "user firms", err)
		return directory.User{}, nil, false
	}
	if !c.canSee(firms) {
		s.forbid(w, r, "you may see only the users of firm "+strings.Join(c.managed(), ", "))
		return directory.User{}, nil, false
	}
	return u, firms, true
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
