package reconcile

import (
	"context"
	"fmt"
	"sort"

	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/mapping"
	"github.com/dirsyncd/dirsyncd/store"
)

const pageSize = 5000

// world is the part of the facts shared by every user: firms, offices and the
// group graph. A full run also holds every direct membership, legacy login
// and grant, read in bulk.
type world struct {
	firms   map[string]directory.Firm
	offices map[string][]directory.Office
	groups  map[string]directory.Group // live groups by id
	parents map[string][]string        // child group id -> parent group ids
	anc     map[string][]mapping.GroupFact

	// full runs only
	full       bool
	links      map[string][]directory.SourceLink // by user, from the sources read in bulk
	userGroups map[string][]string
	legacy     map[string][]directory.LegacyLogin
	grants     map[string][]directory.Grant
	grantCount int
}

// loadWorld reads firms, offices and the group graph; with full it also
// reads every membership, legacy login and grant. Any error aborts: a failed
// read is never taken for an absence.
func loadWorld(ctx context.Context, s Store, full bool, linkSources []string) (*world, error) {
	w := &world{
		firms: map[string]directory.Firm{}, offices: map[string][]directory.Office{},
		groups: map[string]directory.Group{}, parents: map[string][]string{},
		anc: map[string][]mapping.GroupFact{}, full: full,
	}
	firms, err := s.ListFirms(ctx)
	if err != nil {
		return nil, fmt.Errorf("reconcile: list firms: %w", err)
	}
	for _, f := range firms {
		w.firms[f.Number] = f
	}
	offices, err := s.ListOffices(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("reconcile: list offices: %w", err)
	}
	for _, o := range offices {
		w.offices[o.FirmNumber] = append(w.offices[o.FirmNumber], o)
	}
	groups, err := s.ListGroups(ctx, store.GroupQuery{Limit: -1})
	if err != nil {
		return nil, fmt.Errorf("reconcile: list groups: %w", err)
	}
	if int64(len(groups.Items)) != groups.Total {
		return nil, fmt.Errorf("reconcile: list groups: read %d of %d", len(groups.Items), groups.Total)
	}
	if full {
		w.userGroups = map[string][]string{}
	}
	for _, g := range groups.Items {
		if g.DeletedAt != nil {
			continue
		}
		w.groups[g.ID] = g
		children, err := s.ListGroupChildren(ctx, g.ID)
		if err != nil {
			return nil, fmt.Errorf("reconcile: list children of group %s: %w", g.ID, err)
		}
		for _, c := range children {
			w.parents[c] = append(w.parents[c], g.ID)
		}
		if !full {
			continue
		}
		after := ""
		for {
			ids, err := s.ListGroupMembers(ctx, g.ID, after, pageSize)
			if err != nil {
				return nil, fmt.Errorf("reconcile: list members of group %s: %w", g.ID, err)
			}
			for _, id := range ids {
				w.userGroups[id] = append(w.userGroups[id], g.ID)
			}
			if len(ids) < pageSize {
				break
			}
			after = ids[len(ids)-1]
		}
	}
	for id := range w.groups {
		w.anc[id] = w.walkUp(id) // read-only from here: safe for parallel use
	}
	if !full {
		return w, nil
	}
	if err := w.loadLinks(ctx, s, linkSources); err != nil {
		return nil, err
	}
	logins, err := s.ListLegacyLogins(ctx, store.LegacyLoginQuery{})
	if err != nil {
		return nil, fmt.Errorf("reconcile: list legacy logins: %w", err)
	}
	w.legacy = map[string][]directory.LegacyLogin{}
	for _, l := range logins {
		if l.UserID != "" {
			w.legacy[l.UserID] = append(w.legacy[l.UserID], l)
		}
	}
	grants, err := s.ListGrants(ctx, store.GrantQuery{})
	if err != nil {
		return nil, fmt.Errorf("reconcile: list grants: %w", err)
	}
	// A full run holds every grant: keep only what the diff needs, with
	// the many repeated strings (firm, service, role, provenance) interned.
	in := interner{}
	w.grants = map[string][]directory.Grant{}
	for _, g := range grants {
		c := directory.Grant{UserID: g.UserID, FirmNumber: in.s(g.FirmNumber), Service: in.s(g.Service), Role: in.s(g.Role),
			AllOffices: g.AllOffices, Offices: g.Offices, Provenance: make([]directory.Provenance, len(g.Provenance))}
		for i, p := range g.Provenance {
			c.Provenance[i] = directory.Provenance{Kind: directory.ProvenanceKind(in.s(string(p.Kind))), Ref: in.s(p.Ref), Detail: in.s(p.Detail)}
		}
		w.grants[g.UserID] = append(w.grants[g.UserID], c)
	}
	w.grantCount = len(grants)
	return w, nil
}

// interner shares one copy of repeated strings.
type interner map[string]string

func (in interner) s(v string) string {
	if c, ok := in[v]; ok {
		return c
	}
	in[v] = v
	return v
}

// loadLinks reads, in bulk, the links of the sources named and of every
// source a group comes from (plus "cwa"). The per-user view this gives is
// only trusted when it shows a live link; otherwise facts falls back to
// reading the user's links one by one, so a source missing from the list
// can never make a user look gone.
func (w *world) loadLinks(ctx context.Context, s Store, extra []string) error {
	sources := map[string]bool{"cwa": true}
	for _, src := range extra {
		sources[src] = true
	}
	for _, g := range w.groups {
		sources[g.Source] = true
	}
	w.links = map[string][]directory.SourceLink{}
	for src := range sources {
		after := ""
		for {
			ls, err := s.ListLinks(ctx, src, after, pageSize)
			if err != nil {
				return fmt.Errorf("reconcile: list links of %s: %w", src, err)
			}
			for _, l := range ls {
				l.Source, l.DN = src, "" // only liveness matters here
				w.links[l.UserID] = append(w.links[l.UserID], l)
			}
			if len(ls) < pageSize {
				break
			}
			after = ls[len(ls)-1].Key
		}
	}
	return nil
}

func hasLive(ls []directory.SourceLink) bool {
	for _, l := range ls {
		if l.GoneAt == nil {
			return true
		}
	}
	return false
}

// ancestors returns group id and the groups containing it, transitively,
// each with the path of names it was reached through.
func (w *world) ancestors(id string) []mapping.GroupFact { return w.anc[id] }

func (w *world) walkUp(id string) []mapping.GroupFact {
	g, ok := w.groups[id]
	if !ok {
		return nil
	}
	out := []mapping.GroupFact{{Group: g}}
	seen := map[string]bool{id: true}
	type item struct {
		id  string
		via []string
	}
	queue := []item{{id: id}}
	for len(queue) > 0 {
		it := queue[0]
		queue = queue[1:]
		child := w.groups[it.id]
		for _, p := range w.parents[it.id] {
			pg, ok := w.groups[p]
			if !ok || seen[p] {
				continue
			}
			seen[p] = true
			via := append(append([]string(nil), it.via...), child.DisplayName)
			out = append(out, mapping.GroupFact{Group: pg, Via: via})
			queue = append(queue, item{id: p, via: via})
		}
	}
	return out
}

// facts assembles the facts of u.
func (w *world) facts(ctx context.Context, s Store, u directory.User) (*mapping.Facts, error) {
	f := &mapping.Facts{User: u, Firms: w.firms, Offices: w.offices}
	var err error
	if ls := w.links[u.ID]; w.full && hasLive(ls) {
		f.Links = ls
	} else if f.Links, err = s.ListUserLinks(ctx, u.ID); err != nil {
		return nil, fmt.Errorf("reconcile: links of user %s: %w", u.ID, err)
	}
	if f.Memberships, err = s.ListFirmMemberships(ctx, u.ID); err != nil {
		return nil, fmt.Errorf("reconcile: firm memberships of user %s: %w", u.ID, err)
	}
	var direct []string
	if w.full {
		direct = w.userGroups[u.ID]
		f.LegacyLogins = w.legacy[u.ID]
		f.Grants = w.grants[u.ID]
	} else {
		gs, err := s.ListUserGroups(ctx, u.ID)
		if err != nil {
			return nil, fmt.Errorf("reconcile: groups of user %s: %w", u.ID, err)
		}
		for _, g := range gs {
			direct = append(direct, g.ID)
		}
		if f.LegacyLogins, err = s.ListLegacyLogins(ctx, store.LegacyLoginQuery{UserID: u.ID}); err != nil {
			return nil, fmt.Errorf("reconcile: legacy logins of user %s: %w", u.ID, err)
		}
		if f.Grants, err = s.ListGrants(ctx, store.GrantQuery{UserID: u.ID}); err != nil {
			return nil, fmt.Errorf("reconcile: grants of user %s: %w", u.ID, err)
		}
	}
	seen := map[string]bool{}
	for _, id := range direct {
		for _, gf := range w.ancestors(id) {
			if !seen[gf.Group.ID] {
				seen[gf.Group.ID] = true
				f.Groups = append(f.Groups, gf)
			}
		}
	}
	sort.SliceStable(f.Groups, func(i, j int) bool { return len(f.Groups[i].Via) < len(f.Groups[j].Via) })
	return f, nil
}

// LoadFacts reads the facts of one user (for explain).
func LoadFacts(ctx context.Context, s Store, userID string) (*mapping.Facts, error) {
	w, err := loadWorld(ctx, s, false, nil)
	if err != nil {
		return nil, err
	}
	u, err := s.GetUser(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("reconcile: get user %s: %w", userID, err)
	}
	return w.facts(ctx, s, u)
}
