package caseaccess

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
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
//
// The read path is one query when user is an id (AccessFacts: user, case,
// invite, access record and grant counts), plus the case's group and domain
// grants when it has some and the invite does not decide. Only a first
// access, or a grant the user had not used before, writes.
func (s *Service) Decide(ctx context.Context, m audit.Meta, ref, user string) (Decision, error) {
	now := s.nowUTC()
	if e := checkRef(ref); e != nil {
		return Decision{}, e
	}
	f, err := s.facts(ctx, ref, user)
	if err != nil {
		return Decision{}, err
	}
	c, u := f.Case, f.User
	d := Decision{CaseRef: c.Ref, UserID: u.ID}
	var groups []GroupGrant
	if !u.Active {
		d.Reason = "user is not active"
		return d, s.fillGrantors(ctx, c, f, groups, now, &d)
	}
	live, groups, err := s.liveGrant(ctx, f, now)
	if err != nil {
		return Decision{}, err
	}
	if live == nil {
		if f.Access != nil {
			if g, ok := retainedGrant(*f.Access); ok {
				d.Allowed = true
				d.Via = &Via{Kind: ViaRetained, ID: g.ID, Detail: g.Detail, RetainedFrom: g.Kind, RetainedAt: g.RetainedAt}
				d.Defendants, d.AllDefendants = g.Defendants, g.AllDefendants
				first := f.Access.FirstAt
				d.FirstAccessAt = &first
				return d, nil
			}
		}
		d.Reason = "no invite, group or domain grant gives this user access"
		return d, s.fillGrantors(ctx, c, f, groups, now, &d)
	}
	d.Allowed = true
	d.Via = &Via{Kind: live.ViaKind, ID: live.ViaID, Detail: live.ViaDetail}
	d.Defendants, d.AllDefendants = live.Defendants, live.AllDefendants
	if f.Access != nil {
		if _, changed := mergeAccess(*f.Access, *live, now); !changed {
			first := f.Access.FirstAt
			d.FirstAccessAt = &first
			return d, nil // the common case: nothing to write
		}
	}
	live.CaseRef, live.UserID, live.FirstAt = c.Ref, u.ID, now
	if live.ViaKind != ViaInvite {
		live.Grants = []UsedGrant{usedGrant(*live, now)}
	}
	var rec Access
	first := false
	err = s.st.UpdateCases(ctx, m, func(ctx context.Context, tx Tx) error {
		if f.Access == nil { // first access: one INSERT (and its audit event)
			ok, err := tx.InsertAccess(ctx, live)
			if err != nil || ok {
				first, rec = ok, *live
				return err
			}
			// a concurrent decision recorded the first access: merge below
		}
		cur, err := tx.GetAccess(ctx, c.Ref, u.ID)
		if err != nil {
			return err
		}
		next, changed := mergeAccess(cur, *live, now)
		rec = next
		if !changed {
			return nil
		}
		return tx.UpdateAccess(ctx, "case.access.via", &cur, &next)
	})
	if err != nil {
		return Decision{}, fmt.Errorf("caseaccess: record access: %w", err)
	}
	d.FirstAccess = first
	fa := rec.FirstAt
	d.FirstAccessAt = &fa
	return d, nil
}

// facts reads what a decision needs, resolving user by id first (one
// query), then by userName or e-mail.
func (s *Service) facts(ctx context.Context, ref, user string) (Facts, error) {
	user = strings.TrimSpace(user)
	if user == "" {
		return Facts{}, invalid("user", "is required")
	}
	f, err := s.st.AccessFacts(ctx, ref, user)
	if err != nil && !isNotFound(err) {
		return Facts{}, fmt.Errorf("caseaccess: read case %q: %w", ref, err)
	}
	if err != nil || f.User.DeletedAt != nil { // not an id (of a user not deleted)
		u, err := resolveByName(ctx, s.st, "user", user)
		if err != nil {
			return Facts{}, err
		}
		if f, err = s.st.AccessFacts(ctx, ref, u.ID); err != nil {
			return Facts{}, fmt.Errorf("caseaccess: read case %q: %w", ref, err)
		}
	}
	if !f.CaseFound {
		return Facts{}, notFound("ref", "no case %q", ref)
	}
	return f, nil
}

// usedGrant is the grant-list entry of a group or domain access.
func usedGrant(a Access, now time.Time) UsedGrant {
	return UsedGrant{Kind: a.ViaKind, ID: a.ViaID, Detail: a.ViaDetail, Defendants: a.Defendants, AllDefendants: a.AllDefendants, FirstAt: now}
}

// mergeAccess applies a decision through live to the record cur: the
// grant used last becomes live (no longer retained) and a group or domain
// grant joins the record's grant list. changed is false when cur already
// says so (nothing to write).
func mergeAccess(cur, live Access, now time.Time) (Access, bool) {
	next := cur
	next.Grants = append([]UsedGrant(nil), cur.UsedGrants()...)
	changed := false
	if cur.RetainedAt != nil || cur.ViaKind != live.ViaKind || cur.ViaID != live.ViaID {
		next.ViaKind, next.ViaID, next.ViaDetail = live.ViaKind, live.ViaID, live.ViaDetail
		next.Defendants, next.AllDefendants, next.RetainedAt = live.Defendants, live.AllDefendants, nil
		changed = true
	}
	if live.ViaKind != ViaInvite {
		found := false
		for _, g := range next.Grants {
			found = found || (g.Kind == live.ViaKind && g.ID == live.ViaID)
		}
		if !found {
			next.Grants = append(next.Grants, usedGrant(live, now))
			changed = true
		}
	}
	return next, changed
}

// retainedGrant picks the retained grant a user keeps access through: the
// grant they used last if it is retained, else the latest retained one.
func retainedGrant(a Access) (UsedGrant, bool) {
	var best UsedGrant
	ok := false
	for _, g := range a.UsedGrants() {
		if g.RetainedAt == nil {
			continue
		}
		if g.Kind == a.ViaKind && g.ID == a.ViaID {
			return g, true
		}
		if !ok || g.RetainedAt.After(*best.RetainedAt) {
			best, ok = g, true
		}
	}
	return best, ok
}

// liveGrant finds the grant that gives the user access now: a live
// invite, then a group grant, then a domain grant; nil when none does. It
// also returns the case's group grants when it read them.
func (s *Service) liveGrant(ctx context.Context, f Facts, now time.Time) (*Access, []GroupGrant, error) {
	c, u, inv := f.Case, f.User, f.Invite
	if inv != nil && inv.Live(now) {
		a := &Access{ViaKind: ViaInvite, ViaID: inv.ID, ViaDetail: string(inv.Role)}
		if inv.Role.NeedsDefendants() {
			a.Defendants = inv.Defendants
		} else {
			a.Defendants, a.AllDefendants = c.Defendants, true
		}
		return a, nil, nil
	}
	var groups []GroupGrant
	if f.GroupGrants > 0 {
		var err error
		if groups, err = s.st.ListGroupGrants(ctx, c.Ref); err != nil {
			return nil, nil, fmt.Errorf("caseaccess: list group grants: %w", err)
		}
		for _, g := range groups {
			if groupMatches(g, u) {
				return &Access{ViaKind: ViaGroup, ViaID: g.ID, ViaDetail: groupDetail(g), Defendants: c.Defendants, AllDefendants: true}, groups, nil
			}
		}
	}
	if f.DomainGrants == 0 {
		return nil, groups, nil
	}
	domains, err := s.st.ListDomainGrants(ctx, c.Ref)
	if err != nil {
		return nil, nil, fmt.Errorf("caseaccess: list domain grants: %w", err)
	}
	if len(domains) == 0 {
		return nil, groups, nil
	}
	full, err := s.st.GetUser(ctx, u.ID) // with all the user's e-mails
	if err != nil {
		return nil, nil, fmt.Errorf("caseaccess: get user %q: %w", u.ID, err)
	}
	ud := userDomains(full)
	for _, g := range domains {
		if domainMatches(g, ud, u) {
			return &Access{ViaKind: ViaDomain, ViaID: g.ID, ViaDetail: domainDetail(g), Defendants: g.Defendants}, groups, nil
		}
	}
	return nil, groups, nil
}

func groupDetail(g GroupGrant) string {
	if g.Location == "" {
		return g.UsualRole
	}
	return g.UsualRole + " at " + g.Location
}

func domainDetail(g DomainGrant) string {
	if g.Location == "" {
		return g.Domain
	}
	return g.Domain + " at " + g.Location
}

// fillGrantors lists who can grant access to c, and the roles with access.
// groups are the case's group grants when the caller read them.
func (s *Service) fillGrantors(ctx context.Context, c Case, f Facts, groups []GroupGrant, now time.Time, d *Decision) error {
	var roles []Role
	for _, r := range Roles {
		if r.CanGrant() {
			roles = append(roles, r)
		}
	}
	gs, err := s.st.ListGrantors(ctx, c.Ref, roles, now)
	if err != nil {
		return fmt.Errorf("caseaccess: list grantors: %w", err)
	}
	d.Grantors = gs
	sort.SliceStable(d.Grantors, func(i, j int) bool { return d.Grantors[i].UserName < d.Grantors[j].UserName })
	if groups == nil && f.GroupGrants > 0 {
		if groups, err = s.st.ListGroupGrants(ctx, c.Ref); err != nil {
			return fmt.Errorf("caseaccess: list group grants: %w", err)
		}
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
