package reconcile

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/mapping"
	"github.com/dirsyncd/dirsyncd/store"
)

const pageSize = 5000

// world is the part of the facts shared by every user: firms, offices and the
// group graph (with every live group's ancestors precomputed).
type world struct {
	firms   map[string]directory.Firm
	offices map[string][]directory.Office
	groups  map[string]directory.Group // live groups by id
	parents map[string][]string        // child group id -> parent group ids
	anc     map[string][]mapping.GroupFact
}

// loadWorld reads firms, offices and the group graph (groups and every
// edge, one query each). Any error aborts: a failed read is never taken
// for an absence.
func loadWorld(ctx context.Context, s Store) (*world, error) {
	w := &world{
		firms: map[string]directory.Firm{}, offices: map[string][]directory.Office{},
		groups: map[string]directory.Group{}, parents: map[string][]string{},
		anc: map[string][]mapping.GroupFact{},
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
	for _, g := range groups.Items {
		if g.DeletedAt == nil {
			w.groups[g.ID] = g
		}
	}
	edges, err := s.ListGroupEdges(ctx)
	if err != nil {
		return nil, fmt.Errorf("reconcile: list group edges: %w", err)
	}
	for _, e := range edges {
		if _, ok := w.groups[e.ParentID]; ok {
			w.parents[e.ChildID] = append(w.parents[e.ChildID], e.ParentID)
		}
	}
	for id := range w.groups {
		w.anc[id] = w.walkUp(id) // read-only from here: safe for parallel use
	}
	return w, nil
}

// page is the user-keyed facts of one page of users of a full run, read in
// bulk by id range (one query per kind of fact). Every per-user slice is
// indexed like users: links[i] are the links of users[i]. They are
// full-capacity sub-slices of the rows read (no map, no copy per user), so
// they must be read only.
type page struct {
	users       []directory.User
	links       [][]directory.SourceLink
	memberships [][]directory.FirmMembership
	groups      [][]string // direct group ids
	legacy      [][]directory.LegacyLogin
	grants      [][]directory.Grant
	nGrants     int
}

// byUser splits rows into the rows of each user of users (both in user id
// order, byte-wise, as the store returns them): out[i] holds the rows of
// users[i]. Rows of a user not in users (one created inside the range after
// the page was read) are left out, as a lookup by id would. Rows not in
// order are sorted first (stable), so the result never depends on it.
func byUser[T any](users []directory.User, rows []T, id func(*T) string) [][]T {
	out := make([][]T, len(users))
	for k := 1; k < len(rows); k++ {
		if id(&rows[k]) < id(&rows[k-1]) {
			slices.SortStableFunc(rows, func(a, b T) int { return strings.Compare(id(&a), id(&b)) })
			break
		}
	}
	j := 0
	for lo := 0; lo < len(rows); {
		uid := id(&rows[lo])
		hi := lo + 1
		for hi < len(rows) && id(&rows[hi]) == uid {
			hi++
		}
		for j < len(users) && users[j].ID < uid {
			j++
		}
		if j < len(users) && users[j].ID == uid {
			out[j] = rows[lo:hi:hi]
		}
		lo = hi
	}
	return out
}

// loadPage reads the users after the given id (at most limit) and every fact
// keyed by them, the five range reads concurrently. A page with no user is
// the end.
func loadPage(ctx context.Context, s Store, after string, limit int) (*page, error) {
	users, err := s.ListUsersAfter(ctx, after, limit)
	if err != nil {
		return nil, fmt.Errorf("reconcile: list users after %q: %w", after, err)
	}
	p := &page{users: users}
	if len(users) == 0 {
		return p, nil
	}
	rg := store.UserRange{From: users[0].ID, To: users[len(users)-1].ID}
	of := func(what string, err error) error {
		return fmt.Errorf("reconcile: %s of users %s..%s: %w", what, rg.From, rg.To, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		links, err := s.ListLinksInRange(gctx, rg)
		if err != nil {
			return of("links", err)
		}
		for i := range links {
			links[i].DN = "" // only source and liveness matter here
		}
		p.links = byUser(users, links, func(l *directory.SourceLink) string { return l.UserID })
		return nil
	})
	g.Go(func() error {
		ms, err := s.ListFirmMembershipsInRange(gctx, rg)
		if err != nil {
			return of("firm memberships", err)
		}
		p.memberships = byUser(users, ms, func(m *directory.FirmMembership) string { return m.UserID })
		return nil
	})
	g.Go(func() error {
		gms, err := s.ListGroupMembershipsInRange(gctx, rg)
		if err != nil {
			return of("group memberships", err)
		}
		per := byUser(users, gms, func(m *store.GroupMembership) string { return m.UserID })
		ids := make([]string, 0, len(gms)) // one backing array for every user's group ids
		p.groups = make([][]string, len(users))
		for i, ms := range per {
			lo := len(ids)
			for _, m := range ms {
				ids = append(ids, m.GroupID)
			}
			if len(ids) > lo {
				p.groups[i] = ids[lo:len(ids):len(ids)]
			}
		}
		return nil
	})
	g.Go(func() error {
		logins, err := s.ListLegacyLoginsInRange(gctx, rg)
		if err != nil {
			return of("legacy logins", err)
		}
		p.legacy = byUser(users, logins, func(l *directory.LegacyLogin) string { return l.UserID })
		return nil
	})
	g.Go(func() error {
		grants, err := s.ListGrantsInRange(gctx, rg)
		if err != nil {
			return of("grants", err)
		}
		p.grants = byUser(users, grants, func(g *directory.Grant) string { return g.UserID })
		p.nGrants = len(grants)
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return p, nil
}

// pageFacts assembles the facts of users[i] of the page.
func (w *world) pageFacts(p *page, i int) *mapping.Facts {
	f := &mapping.Facts{User: p.users[i], Firms: w.firms, Offices: w.offices,
		Links: p.links[i], Memberships: p.memberships[i], LegacyLogins: p.legacy[i], Grants: p.grants[i]}
	f.Groups = w.groupFacts(p.groups[i])
	return f
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

// facts reads the facts of one user (event-driven runs, explain).
func (w *world) facts(ctx context.Context, s Store, u directory.User) (*mapping.Facts, error) {
	f := &mapping.Facts{User: u, Firms: w.firms, Offices: w.offices}
	var err error
	if f.Links, err = s.ListUserLinks(ctx, u.ID); err != nil {
		return nil, fmt.Errorf("reconcile: links of user %s: %w", u.ID, err)
	}
	if f.Memberships, err = s.ListFirmMemberships(ctx, u.ID); err != nil {
		return nil, fmt.Errorf("reconcile: firm memberships of user %s: %w", u.ID, err)
	}
	gs, err := s.ListUserGroups(ctx, u.ID)
	if err != nil {
		return nil, fmt.Errorf("reconcile: groups of user %s: %w", u.ID, err)
	}
	direct := make([]string, 0, len(gs))
	for _, g := range gs {
		direct = append(direct, g.ID)
	}
	f.Groups = w.groupFacts(direct)
	if f.LegacyLogins, err = s.ListLegacyLogins(ctx, store.LegacyLoginQuery{UserID: u.ID}); err != nil {
		return nil, fmt.Errorf("reconcile: legacy logins of user %s: %w", u.ID, err)
	}
	if f.Grants, err = s.ListGrants(ctx, store.GrantQuery{UserID: u.ID}); err != nil {
		return nil, fmt.Errorf("reconcile: grants of user %s: %w", u.ID, err)
	}
	return f, nil
}

// groupFacts expands direct group ids into the live groups the user is in,
// directly or through nesting, nearest first. The result may share the
// world's precomputed slices: callers only read it.
func (w *world) groupFacts(direct []string) []mapping.GroupFact {
	switch len(direct) {
	case 0:
		return nil
	case 1:
		return w.ancestors(direct[0])
	}
	n := 0
	for _, id := range direct {
		n += len(w.ancestors(id))
	}
	out := make([]mapping.GroupFact, 0, n)
	var seen map[string]bool
	if n > 32 {
		seen = make(map[string]bool, n)
	}
	for _, id := range direct {
		for _, gf := range w.ancestors(id) {
			switch {
			case seen != nil:
				if seen[gf.Group.ID] {
					continue
				}
				seen[gf.Group.ID] = true
			case slices.ContainsFunc(out, func(o mapping.GroupFact) bool { return o.Group.ID == gf.Group.ID }):
				continue
			}
			out = append(out, gf)
		}
	}
	slices.SortStableFunc(out, func(a, b mapping.GroupFact) int { return len(a.Via) - len(b.Via) })
	return out
}

// LoadFacts reads the facts of one user (for explain).
func LoadFacts(ctx context.Context, s Store, userID string) (*mapping.Facts, error) {
	w, err := loadWorld(ctx, s)
	if err != nil {
		return nil, err
	}
	u, err := s.GetUser(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("reconcile: get user %s: %w", userID, err)
	}
	return w.facts(ctx, s, u)
}
