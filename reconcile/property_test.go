package reconcile

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/mapping"
	"github.com/dirsyncd/dirsyncd/store"
)

// TestConvergenceProperty runs random sequences of source changes (joins,
// leaves, firm moves, office removals, deactivations, gone sources, manual
// grants, event-driven reconciles of some users) against the real SQLite
// store, then a full reconcile, and checks: actual grants equal the desired
// ones, manual grants survive, and a second reconcile writes nothing.
func TestConvergenceProperty(t *testing.T) {
	seeds, rounds, ops := 4, 3, 40
	if testing.Short() {
		seeds = 2
	}
	seen := map[Action]int{}
	for _, b := range backends {
		n := seeds
		if b.name != "sqlite" {
			n = 2 // the same sequences, fewer of them: a network round trip per read
		}
		for seed := 1; seed <= n; seed++ {
			t.Run(fmt.Sprintf("%s/seed=%d", b.name, seed), func(t *testing.T) {
				for a, n := range runProperty(t, b.open(t), uint64(seed), rounds, ops) {
					seen[a] += n
				}
			})
		}
	}
	// the sequences must have exercised every kind of change, or they prove nothing
	for _, a := range []Action{ActGrant, ActRevoke, ActUpdate} {
		if seen[a] == 0 {
			t.Errorf("no %s change in any sequence: %v", a, seen)
		}
	}
	t.Logf("changes planned: %v", seen)
}

func runProperty(t *testing.T, s store.Store, seed uint64, rounds, ops int) map[Action]int {
	seen := map[Action]int{}
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, seed*7919))
	sd := newSeed(t, s)
	engine := launchEngine(t)
	r := New(s, engine, Options{Guard: Guard{MinRevokes: 1 << 30}, BatchSize: 5})

	firms := []string{"3856", "4000", "5000"}
	offices := map[string][]string{"3856": {"0Q731M", "1A001L", "2B002X"}, "4000": {"4C000A"}, "5000": {"5D000A"}}
	groups := []string{"LAA Crime", "LAA CCMS Case Workers", "LAA CCMS Supervisors", "LAA Counsel Billing", "Team A"}
	roles := [][2]string{{"ccms", "case-management"}, {"ccms", "bill-preparation"}, {"crime-apply", "access"}, {"ccms", "counsel-bill-preparation"}}
	var users []string
	firmOf := map[string]string{}
	for i := range 6 {
		f := firms[i%len(firms)]
		id := sd.user(t, fmt.Sprintf("p%d@example.org", i), f, "0Q731M,1A001L,4C000A", groups[rng.IntN(len(groups))])
		users = append(users, id)
		firmOf[id] = f
	}
	manual := map[directory.GrantKey]bool{} // manual grants that must survive
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }

	for round := range rounds {
		for range ops {
			u := pick(users)
			op := rng.IntN(9)
			sd.update(t, func(ctx context.Context, tx store.Tx) error {
				switch op {
				case 0, 1: // join
					return tx.AddMembers(ctx, sd.groups[pick(groups)], []string{u})
				case 2: // leave
					return tx.RemoveMembers(ctx, sd.groups[pick(groups)], []string{u})
				case 3: // move to another firm
					to := pick(firms)
					if err := tx.RemoveFirmMembership(ctx, u, firmOf[u]); err != nil {
						return err
					}
					if err := tx.PutFirmMembership(ctx, directory.FirmMembership{UserID: u, FirmNumber: to, Source: "scim:entra"}); err != nil {
						return err
					}
					cur, err := tx.GetUser(ctx, u)
					if err != nil {
						return err
					}
					cur.FirmNumber, firmOf[u] = to, to
					return tx.UpdateUser(ctx, &cur, 0)
				case 4: // an office closes or reopens
					f := pick(firms)
					o, err := tx.GetOffice(ctx, pick(offices[f]))
					if err != nil {
						return err
					}
					o.Active = !o.Active
					return tx.PutOffice(ctx, &o)
				case 5: // deactivate or reactivate
					cur, err := tx.GetUser(ctx, u)
					if err != nil {
						return err
					}
					cur.Active = !cur.Active
					if !cur.Active {
						for k := range manual {
							if k.UserID == u {
								delete(manual, k) // deprovisioning removes them
							}
						}
					}
					return tx.UpdateUser(ctx, &cur, 0)
				case 6: // the source forgets or finds the user again
					if rng.IntN(2) == 0 {
						return tx.MarkLinkGone(ctx, "scim:entra", "ext-"+mustUserName(ctx, tx, u))
					}
					return tx.PutLink(ctx, directory.SourceLink{UserID: u, Source: "scim:entra", Key: "ext-" + mustUserName(ctx, tx, u)})
				case 7: // an admin grants a role by hand
					cur, err := tx.GetUser(ctx, u)
					if err != nil || !cur.Active {
						return err
					}
					role := roles[rng.IntN(len(roles))]
					k := directory.GrantKey{UserID: u, FirmNumber: firmOf[u], Service: role[0], Role: role[1]}
					g, err := tx.GetGrant(ctx, k)
					if err != nil {
						g = directory.Grant{UserID: u, FirmNumber: k.FirmNumber, Service: k.Service, Role: k.Role, Offices: []string{pick(offices[k.FirmNumber])}}
					}
					g.Provenance = append(g.Provenance, directory.Provenance{Kind: directory.ProvManual, Ref: "admin:prop"})
					manual[k] = true
					return tx.PutGrant(ctx, &g)
				}
				return nil
			})
			if op == 8 { // an event-driven reconcile of a few users in between
				rep, err := r.Users(ctx, []string{u, pick(users)}, RunOptions{Trigger: "event"})
				if err != nil {
					t.Fatal(err)
				}
				for a, n := range rep.Plan.Counts() {
					seen[a] += n
				}
			}
		}
		rep, err := r.Full(ctx, RunOptions{Trigger: "schedule"})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for a, n := range rep.Plan.Counts() {
			seen[a] += n
		}
		for _, u := range users {
			checkConverged(t, s, engine, u)
		}
		for k := range manual {
			g, err := s.GetGrant(ctx, k)
			if err != nil || !slices.ContainsFunc(g.Provenance, func(p directory.Provenance) bool { return p.Kind == directory.ProvManual }) {
				t.Errorf("round %d: manual grant %v lost: %+v %v", round, k, g, err)
			}
		}
		n := countAudit(t, s)
		rep, err = r.Full(ctx, RunOptions{Trigger: "schedule"})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Plan.Changes) != 0 || countAudit(t, s) != n {
			t.Fatalf("round %d: second reconcile not a no-op: %+v", round, rep.Plan.Changes)
		}
	}
	return seen
}

func mustUserName(ctx context.Context, tx store.Tx, id string) string {
	u, err := tx.GetUser(ctx, id)
	if err != nil {
		return ""
	}
	return u.UserName
}

// checkConverged compares a user's stored grants with what the rules desire,
// computed afresh from the store.
func checkConverged(t *testing.T, s store.Store, e *mapping.Engine, userID string) {
	t.Helper()
	ctx := context.Background()
	f, err := LoadFacts(ctx, s, userID)
	if err != nil {
		t.Fatal(err)
	}
	res := e.Evaluate(f)
	actual := map[directory.GrantKey]directory.Grant{}
	for _, g := range f.Grants {
		actual[g.Key()] = g
	}
	if !f.User.Active && len(actual) > 0 {
		t.Errorf("inactive user %s holds %d grants", f.User.UserName, len(actual))
	}
	desired := map[directory.GrantKey]bool{}
	for _, d := range res.Grants {
		k := d.Grant.Key()
		desired[k] = true
		a, ok := actual[k]
		if !ok {
			t.Errorf("%s: desired %v missing", f.User.UserName, k)
			continue
		}
		var rule, other []directory.Provenance
		for _, p := range a.Provenance {
			if p.Kind == directory.ProvRule {
				rule = append(rule, p)
			} else {
				other = append(other, p)
			}
		}
		if !newScope(false, nil, rule).equal(newScope(false, nil, d.Grant.Provenance)) {
			t.Errorf("%s %v: rule provenance %+v, want %+v", f.User.UserName, k, rule, d.Grant.Provenance)
		}
		want := newScope(d.Grant.AllOffices, d.Grant.Offices, nil)
		got := newScope(a.AllOffices, a.Offices, nil)
		if len(other) == 0 && !got.equal(want) {
			t.Errorf("%s %v: scope %s, want %s", f.User.UserName, k, got, want)
		}
		if len(other) > 0 && !got.AllOffices && (want.AllOffices || !subset(want.Offices, got.Offices)) {
			t.Errorf("%s %v: scope %s does not cover desired %s", f.User.UserName, k, got, want)
		}
	}
	for k, a := range actual {
		if desired[k] {
			continue
		}
		for _, p := range a.Provenance {
			if p.Kind == directory.ProvRule {
				t.Errorf("%s %v: undesired grant keeps rule provenance %+v", f.User.UserName, k, a.Provenance)
			}
		}
	}
}

func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}
