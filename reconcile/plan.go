package reconcile

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/mapping"
)

// Action is what a plan does to one grant.
type Action string

// Actions.
const (
	ActGrant  Action = "grant"  // create the grant
	ActRevoke Action = "revoke" // delete the grant
	ActUpdate Action = "update" // change its offices and/or provenance
)

// Scope is a grant's office scope and provenance, as planned.
type Scope struct {
	AllOffices bool                   `json:"allOffices"`
	Offices    []string               `json:"offices,omitempty"`
	Provenance []directory.Provenance `json:"provenance"`
}

func scopeOf(g directory.Grant) *Scope {
	return newScope(g.AllOffices, g.Offices, g.Provenance)
}

// newScope builds a normalised scope, the way the store keeps grants:
// offices sorted and unique (none when all offices), provenance unique and
// sorted by kind, ref, detail. Comparing normalised scopes makes a second
// run a no-op.
func newScope(all bool, offices []string, prov []directory.Provenance) *Scope {
	s := &Scope{AllOffices: all}
	if !all && len(offices) > 0 {
		s.Offices = slices.Clone(offices)
		sort.Strings(s.Offices)
		s.Offices = slices.Compact(s.Offices)
	}
	s.Provenance = slices.Clone(prov)
	sort.Slice(s.Provenance, func(i, j int) bool {
		a, b := s.Provenance[i], s.Provenance[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Ref != b.Ref {
			return a.Ref < b.Ref
		}
		return a.Detail < b.Detail
	})
	s.Provenance = slices.Compact(s.Provenance)
	if s.Provenance == nil {
		s.Provenance = []directory.Provenance{}
	}
	return s
}

func (s *Scope) equal(o *Scope) bool {
	return s.AllOffices == o.AllOffices && slices.Equal(s.Offices, o.Offices) && slices.Equal(s.Provenance, o.Provenance)
}

func (s *Scope) String() string {
	if s.AllOffices {
		return "all offices"
	}
	if len(s.Offices) == 0 {
		return "no offices"
	}
	return "offices " + strings.Join(s.Offices, ",")
}

// Change is one planned change to one grant. Before is the grant as it was
// when planned (nil for a grant); applying re-checks it.
type Change struct {
	Action   Action `json:"action"`
	UserID   string `json:"userId"`
	UserName string `json:"userName,omitempty"`
	Firm     string `json:"firm"`
	Service  string `json:"service"`
	Role     string `json:"role"`
	Before   *Scope `json:"before,omitempty"`
	After    *Scope `json:"after,omitempty"`
	Reason   string `json:"reason"`
}

// Key returns the grant key the change is about.
func (c Change) Key() directory.GrantKey {
	return directory.GrantKey{UserID: c.UserID, FirmNumber: c.Firm, Service: c.Service, Role: c.Role}
}

// Plan is the list of changes a run makes, in grant key order.
type Plan struct {
	Changes []Change `json:"changes"`
}

// Counts returns how many changes of each action the plan holds.
func (p *Plan) Counts() map[Action]int {
	m := map[Action]int{}
	for _, c := range p.Changes {
		m[c.Action]++
	}
	return m
}

// Hash is the hex SHA-256 of the plan's canonical JSON: approving a held
// run names it, so exactly the reviewed plan is applied.
func (p *Plan) Hash() string {
	b, _ := json.Marshal(p.Changes)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func (p *Plan) sort() {
	sort.SliceStable(p.Changes, func(i, j int) bool { return mapping.KeyLess(p.Changes[i].Key(), p.Changes[j].Key()) })
}

// WriteText prints the plan for people, one line per change.
func (p *Plan) WriteText(w io.Writer) error {
	var b strings.Builder
	c := p.Counts()
	fmt.Fprintf(&b, "plan %s: %d grant, %d update, %d revoke\n", p.Hash()[:12], c[ActGrant], c[ActUpdate], c[ActRevoke])
	for _, ch := range p.Changes {
		who := ch.UserID
		if ch.UserName != "" {
			who = ch.UserName
		}
		fmt.Fprintf(&b, "%-6s %s firm %s %s/%s", ch.Action, who, ch.Firm, ch.Service, ch.Role)
		switch ch.Action {
		case ActGrant:
			fmt.Fprintf(&b, " [%s]", ch.After)
		case ActUpdate:
			fmt.Fprintf(&b, " [%s] -> [%s] %s -> %s", ch.Before, ch.After, provString(ch.Before.Provenance), provString(ch.After.Provenance))
		case ActRevoke:
			fmt.Fprintf(&b, " [%s]", ch.Before)
		}
		fmt.Fprintf(&b, "\n       because %s\n", ch.Reason)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func provString(ps []directory.Provenance) string {
	var s []string
	for _, p := range ps {
		s = append(s, string(p.Kind)+":"+p.Ref)
	}
	return "(" + strings.Join(s, " ") + ")"
}

// diffUser plans the changes that make u's actual grants what res desires.
// Rules own only ProvRule provenance: a grant that also has a manual or
// source provenance is never revoked by rules; it keeps the union of its own
// scope and the rules' scope while rules also produce it. A deprovisioned
// user (inactive or deleted) loses every grant.
func diffUser(u directory.User, res mapping.Result, actual []directory.Grant) []Change {
	deprov := u.DeletedAt != nil || !u.Active
	desired := make(map[directory.GrantKey]*mapping.Desired, len(res.Grants))
	for i := range res.Grants {
		desired[res.Grants[i].Grant.Key()] = &res.Grants[i]
	}
	var out []Change
	mk := func(a Action, k directory.GrantKey, before, after *Scope, reason string) {
		out = append(out, Change{Action: a, UserID: k.UserID, UserName: u.UserName, Firm: k.FirmNumber,
			Service: k.Service, Role: k.Role, Before: before, After: after, Reason: reason})
	}
	seen := make(map[directory.GrantKey]bool, len(actual))
	for _, a := range actual {
		k := a.Key()
		seen[k] = true
		if d, ok := desired[k]; ok && !deprov && sameRuleGrant(a, d.Grant) {
			continue // the common case of a no-op run: decided without allocating
		}
		before := scopeOf(a)
		if deprov {
			why := "user is inactive: deprovisioned, every grant is removed"
			if u.DeletedAt != nil {
				why = "user is deleted: deprovisioned, every grant is removed"
			}
			mk(ActRevoke, k, before, nil, why)
			continue
		}
		var other []directory.Provenance
		hadRule := false
		for _, p := range a.Provenance {
			if p.Kind == directory.ProvRule {
				hadRule = true
			} else {
				other = append(other, p)
			}
		}
		d, want := desired[k]
		if !want {
			switch {
			case !hadRule:
				// manual or source only: not ours
			case len(other) == 0:
				mk(ActRevoke, k, before, nil, revokeReason(res))
			default:
				after := newScope(before.AllOffices, before.Offices, other)
				mk(ActUpdate, k, before, after, "no rule grants it any more; kept for its "+provString(other)+" provenance")
			}
			continue
		}
		all, offices := d.Grant.AllOffices, d.Grant.Offices
		if len(other) > 0 {
			all, offices = union(a, d.Grant)
		}
		after := newScope(all, offices, append(slices.Clone(other), d.Grant.Provenance...))
		if before.equal(after) {
			continue
		}
		reason := strings.Join(d.Reasons, "; ")
		if before.AllOffices == after.AllOffices && slices.Equal(before.Offices, after.Offices) {
			reason = "provenance: " + reason
		} else {
			reason = "offices " + before.String() + " -> " + after.String() + ": " + reason
		}
		mk(ActUpdate, k, before, after, reason)
	}
	if !deprov {
		for _, d := range res.Grants {
			k := d.Grant.Key()
			if seen[k] {
				continue
			}
			mk(ActGrant, k, nil, newScope(d.Grant.AllOffices, d.Grant.Offices, d.Grant.Provenance), strings.Join(d.Reasons, "; "))
		}
	}
	return out
}

// sameRuleGrant reports whether actual grant a, holding only rule
// provenance, already is exactly desired grant d: same office scope
// (normalised: sorted, unique, none when all offices) and the same set of
// provenances. A false answer only means "look closer".
func sameRuleGrant(a, d directory.Grant) bool {
	if a.AllOffices != d.AllOffices || len(a.Provenance) != len(d.Provenance) {
		return false
	}
	if !a.AllOffices && !slices.Equal(a.Offices, d.Offices) {
		return false
	}
	for i, p := range a.Provenance {
		if p.Kind != directory.ProvRule || !slices.Contains(d.Provenance, p) || slices.Contains(a.Provenance[:i], p) {
			return false
		}
	}
	return true
}

func revokeReason(res mapping.Result) string {
	if res.Ineligible != "" {
		return "no rule applies: " + res.Ineligible
	}
	return "no rule grants it any more"
}

func nonEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}

func union(a, b directory.Grant) (bool, []string) {
	if a.AllOffices || b.AllOffices {
		return true, nil
	}
	out := append(slices.Clone(a.Offices), b.Offices...)
	sort.Strings(out)
	return false, nonEmpty(slices.Compact(out))
}
