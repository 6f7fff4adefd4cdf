package caseaccess

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// Via says which grant allowed access.
type Via struct {
	Kind   ViaKind `json:"kind"`
	ID     string  `json:"id"`               // invite or grant id
	Detail string  `json:"detail,omitempty"` // role, usual role@location, domain
	// RetainedFrom is set for a retained access: the kind of the removed
	// grant through which the user had accessed the case.
	RetainedFrom ViaKind    `json:"retainedFrom,omitempty"`
	RetainedAt   *time.Time `json:"retainedAt,omitempty"`
}

// Grantor is a user who can grant access to a case.
type Grantor struct {
	UserID      string `json:"userId"`
	UserName    string `json:"userName"`
	DisplayName string `json:"displayName,omitempty"`
	Email       string `json:"email,omitempty"`
	Role        Role   `json:"role"`
}

// Decision answers "may this user access this case?".
type Decision struct {
	CaseRef       string     `json:"caseRef"`
	UserID        string     `json:"userId"`
	Allowed       bool       `json:"allowed"`
	Via           *Via       `json:"via,omitempty"`
	Defendants    []string   `json:"defendants,omitempty"`
	AllDefendants bool       `json:"allDefendants,omitempty"`
	FirstAccess   bool       `json:"firstAccess,omitempty"` // this decision recorded the first access
	FirstAccessAt *time.Time `json:"firstAccessAt,omitempty"`
	Reason        string     `json:"reason,omitempty"` // why denied
	// Denied only: the users who can grant access, and the usual roles
	// (groups) that have access.
	Grantors []Grantor `json:"grantors,omitempty"`
	Roles    []string  `json:"roles,omitempty"`
}

// Decide decides whether user (id, userName or e-mail) may access case
// ref, recording the first access (and a change of grant) with m.
func (s *Service) Decide(ctx context.Context, m audit.Meta, ref, user string) (Decision, error) {
	now := s.nowUTC()
	if e := checkRef(ref); e != nil {
		return Decision{}, e
	}
	u, err := ResolveUser(ctx, s.st, "user", user)
	if err != nil {
		return Decision{}, err
	}
	// One query for the case, the user's invite and access record.
	c, inv, recp, err := s.st.AccessFacts(ctx, ref, u.ID)
	if isNotFound(err) {
		return Decision{}, notFound("ref", "no case %q", ref)
	}
	if err != nil {
		return Decision{}, fmt.Errorf("caseaccess: read case %q: %w", ref, err)
	}
	d := Decision{CaseRef: c.Ref, UserID: u.ID}
	if !u.Active {
		d.Reason = "user is not active"
		return d, s.fillGrantors(ctx, c, now, &d)
	}
	live, err := s.liveGrant(ctx, c, u, inv, now)
	if err != nil {
		return Decision{}, err
	}
	var rec Access
	hasRec := recp != nil
	if hasRec {
		rec = *recp
	}
	if live == nil {
		if hasRec && rec.RetainedAt != nil {
			d.Allowed = true
			d.Via = &Via{Kind: ViaRetained, ID: rec.ViaID, Detail: rec.ViaDetail, RetainedFrom: rec.ViaKind, RetainedAt: rec.RetainedAt}
			d.Defendants, d.AllDefendants = rec.Defendants, rec.AllDefendants
			first := rec.FirstAt
			d.FirstAccessAt = &first
			return d, nil
		}
		d.Reason = "no invite, group or domain grant gives this user access"
		return d, s.fillGrantors(ctx, c, now, &d)
	}
	d.Allowed = true
	d.Via = &Via{Kind: live.ViaKind, ID: live.ViaID, Detail: live.ViaDetail}
	d.Defendants, d.AllDefendants = live.Defendants, live.AllDefendants
	if hasRec && rec.RetainedAt == nil && rec.ViaKind == live.ViaKind && rec.ViaID == live.ViaID {
		first := rec.FirstAt
		d.FirstAccessAt = &first
		return d, nil // the common case: nothing to write
	}
	live.CaseRef, live.UserID, live.FirstAt = c.Ref, u.ID, now
	for attempt := 0; ; attempt++ {
		first := false
		err = s.st.UpdateCases(ctx, m, func(ctx context.Context, tx Tx) error {
			var err error
			first, err = tx.PutAccess(ctx, live)
			return err
		})
		if errors.Is(err, store.ErrConflict) && attempt == 0 {
			continue // a concurrent decision recorded the first access
		}
		if err != nil {
			return Decision{}, fmt.Errorf("caseaccess: record access: %w", err)
		}
		d.FirstAccess = first
		fa := live.FirstAt
		d.FirstAccessAt = &fa
		return d, nil
	}
}

// liveGrant finds the grant that gives u access now: a live invite, then
// a group grant, then a domain grant; nil when none does. inv is the
// user's invite not yet revoked, if any.
func (s *Service) liveGrant(ctx context.Context, c Case, u directory.User, inv *Invite, now time.Time) (*Access, error) {
	if inv != nil && inv.Live(now) {
		a := &Access{ViaKind: ViaInvite, ViaID: inv.ID, ViaDetail: string(inv.Role)}
		if inv.Role.NeedsDefendants() {
			a.Defendants = inv.Defendants
		} else {
			a.Defendants, a.AllDefendants = c.Defendants, true
		}
		return a, nil
	}
	groups, err := s.st.ListGroupGrants(ctx, c.Ref)
	if err != nil {
		return nil, fmt.Errorf("caseaccess: list group grants: %w", err)
	}
	for _, g := range groups {
		if groupMatches(g, u) {
			return &Access{ViaKind: ViaGroup, ViaID: g.ID, ViaDetail: groupDetail(g), Defendants: c.Defendants, AllDefendants: true}, nil
		}
	}
	domains, err := s.st.ListDomainGrants(ctx, c.Ref)
	if err != nil {
		return nil, fmt.Errorf("caseaccess: list domain grants: %w", err)
	}
	if len(domains) > 0 {
		ud := userDomains(u)
		for _, g := range domains {
			if domainMatches(g, ud, u) {
				detail := g.Domain
				if g.Location != "" {
					detail += " at " + g.Location
				}
				return &Access{ViaKind: ViaDomain, ViaID: g.ID, ViaDetail: detail, Defendants: g.Defendants}, nil
			}
		}
	}
	return nil, nil
}

func groupDetail(g GroupGrant) string {
	if g.Location == "" {
		return g.UsualRole
	}
	return g.UsualRole + " at " + g.Location
}

// fillGrantors lists who can grant access to c, and the roles with access.
func (s *Service) fillGrantors(ctx context.Context, c Case, now time.Time, d *Decision) error {
	var roles []Role
	for _, r := range Roles {
		if r.CanGrant() {
			roles = append(roles, r)
		}
	}
	invs, err := s.st.ListGrantorInvites(ctx, c.Ref, roles, now)
	if err != nil {
		return fmt.Errorf("caseaccess: list grantors: %w", err)
	}
	for _, inv := range invs {
		u, err := s.st.GetUser(ctx, inv.UserID)
		if err != nil {
			return fmt.Errorf("caseaccess: grantor %q: %w", inv.UserID, err)
		}
		if !u.Active || u.DeletedAt != nil {
			continue
		}
		d.Grantors = append(d.Grantors, Grantor{UserID: u.ID, UserName: u.UserName, DisplayName: u.DisplayName, Email: u.Email, Role: inv.Role})
	}
	sort.Slice(d.Grantors, func(i, j int) bool { return d.Grantors[i].UserName < d.Grantors[j].UserName })
	groups, err := s.st.ListGroupGrants(ctx, c.Ref)
	if err != nil {
		return fmt.Errorf("caseaccess: list group grants: %w", err)
	}
	seen := map[string]bool{}
	for _, g := range groups {
		k := strings.ToLower(groupDetail(g))
		if !seen[k] {
			seen[k] = true
			d.Roles = append(d.Roles, groupDetail(g))
		}
	}
	return nil
}
