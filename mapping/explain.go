package mapping

import (
	"fmt"
	"io"
	"strings"

	"github.com/dirsyncd/dirsyncd/directory"
)

// Explanation answers, for one user, why they have each role and why they do
// not have the others.
type Explanation struct {
	UserID     string `json:"userId"`
	UserName   string `json:"userName"`
	Status     Status `json:"status"`
	Ineligible string `json:"ineligible,omitempty"`
	// Deprovisioned: the user is inactive or deleted, so every grant,
	// manual ones too, is revoked at the next reconcile.
	Deprovisioned bool              `json:"deprovisioned,omitempty"`
	Firms         []FirmExplanation `json:"firms"`
	// Other holds actual grants in firms the user is no longer a member of.
	Other []RoleExplanation `json:"other,omitempty"`
}

// FirmExplanation covers one of the user's firms.
type FirmExplanation struct {
	Number string             `json:"number"`
	Name   string             `json:"name,omitempty"`
	Type   directory.FirmType `json:"type,omitempty"`
	Note   string             `json:"note,omitempty"` // unknown or disabled firm
	Roles  []RoleExplanation  `json:"roles"`
}

// RoleExplanation says why a role is (or would be) held, or why not.
type RoleExplanation struct {
	Role    string `json:"role"` // service/role
	Desired bool   `json:"desired"`
	Held    bool   `json:"held"`
	// Scope is the held grant's office scope when held, else the scope
	// rules would grant.
	Scope string `json:"scope,omitempty"`
	// ScopeChange, for a held role, is the scope reconcile will change it
	// to (the rules' scope; with a manual or source provenance too, its
	// union with the held one), when that differs from Scope.
	ScopeChange string                 `json:"scopeChange,omitempty"`
	Provenance  []directory.Provenance `json:"provenance,omitempty"` // of the actual grant
	Why         []string               `json:"why,omitempty"`
	WhyNot      []string               `json:"whyNot,omitempty"`
}

// Explain evaluates f with a trace and explains every catalogue role in each
// of the user's firms.
func (e *Engine) Explain(f *Facts) Explanation {
	res := e.evaluate(f, true)
	x := Explanation{UserID: f.User.ID, UserName: f.User.UserName, Status: res.Status, Ineligible: res.Ineligible,
		Deprovisioned: f.User.DeletedAt != nil || !f.User.Active}
	actual := map[directory.GrantKey]directory.Grant{}
	for _, g := range f.Grants {
		actual[g.Key()] = g
	}
	desired := map[directory.GrantKey]Desired{}
	for _, d := range res.Grants {
		desired[d.Grant.Key()] = d
	}
	explained := map[directory.GrantKey]bool{}
	for _, fn := range userFirms(f) {
		fx := FirmExplanation{Number: fn}
		firm, ok := f.Firms[fn]
		switch {
		case !ok:
			fx.Note = "unknown firm: no rule applies"
		case !firm.Enabled:
			fx.Name, fx.Type, fx.Note = firm.Name, firm.Type, "firm is disabled: no rule applies"
		default:
			fx.Name, fx.Type = firm.Name, firm.Type
		}
		for _, role := range e.cat.Roles() {
			k := directory.GrantKey{UserID: f.User.ID, FirmNumber: fn, Service: role.service.Slug, Role: role.Slug}
			explained[k] = true
			rx := RoleExplanation{Role: role.ID()}
			if d, ok := desired[k]; ok {
				rx.Desired = true
				rx.Why = d.Reasons
				rx.Scope = grantScope(d.Grant)
			}
			if g, ok := actual[k]; ok {
				rx.Held = true
				rx.Provenance = g.Provenance
				held := grantScope(g)
				if d, ok := desired[k]; ok {
					want := d.Grant
					if hasNonRule(g) { // reconcile keeps the union (it never narrows what a person granted)
						want.AllOffices, want.Offices = unionScope(g, scope{all: d.Grant.AllOffices, offices: d.Grant.Offices})
					}
					if w := grantScope(want); w != held {
						rx.ScopeChange = w
					}
				}
				rx.Scope = held
				for _, p := range g.Provenance {
					if p.Kind != directory.ProvRule {
						rx.Why = append(rx.Why, fmt.Sprintf("%s grant by %s", p.Kind, p.Ref))
					}
				}
			}
			if !rx.Desired {
				rx.WhyNot = e.whyNot(&res, f, role, fn, ok && firm.Enabled, firm)
			}
			fx.Roles = append(fx.Roles, rx)
		}
		x.Firms = append(x.Firms, fx)
	}
	for _, g := range f.Grants {
		if explained[g.Key()] {
			continue
		}
		rx := RoleExplanation{Role: g.Service + "/" + g.Role, Held: true, Scope: grantScope(g), Provenance: g.Provenance,
			WhyNot: []string{fmt.Sprintf("the user is not a member of firm %s", g.FirmNumber)}}
		x.Other = append(x.Other, rx)
	}
	return x
}

func (e *Engine) whyNot(res *Result, f *Facts, role *Role, fn string, usable bool, firm directory.Firm) []string {
	if res.Ineligible != "" {
		return []string{res.Ineligible}
	}
	if !usable {
		return []string{"firm " + fn + " is unknown or disabled"}
	}
	if !role.Eligible(firm.Type) {
		return []string{fmt.Sprintf("not allowed for firm type %s", firm.Type)}
	}
	var out []string
	for _, d := range res.Denied {
		if d.Firm == fn && d.Role == role.ID() {
			out = append(out, fmt.Sprintf("rule %s matched but: %s", d.Rule, d.Reason))
		}
	}
	for _, c := range res.Conflicts {
		if c.Firm == fn && c.Role == role.ID() {
			out = append(out, fmt.Sprintf("rule %s matched but the role conflicts with %s (given by %s)", c.Rule, c.With, c.WithBy))
		}
	}
	rules := e.grantsOf[role.ID()]
	if len(rules) == 0 {
		out = append(out, "no rule grants it")
		return out
	}
	for _, t := range res.trace {
		if t.firm != fn || t.rule == nil || t.matched {
			continue
		}
		for _, r := range rules {
			if r == t.rule {
				out = append(out, fmt.Sprintf("rule %s does not match: %s", r.Name, t.detail))
			}
		}
	}
	return out
}

func grantScope(g directory.Grant) string {
	if g.AllOffices {
		return "all offices"
	}
	if len(g.Offices) == 0 {
		return "no offices"
	}
	return "offices " + strings.Join(g.Offices, ",")
}

// WriteText renders the explanation for people. With all=false, roles that
// are neither held, desired nor granted by any rule are summarised in one
// line instead of listed.
func (x Explanation) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "user %s (%s): %s\n", x.UserName, x.UserID, x.Status)
	if x.Ineligible != "" {
		fmt.Fprintf(&b, "  no rule applies: %s\n", x.Ineligible)
	}
	for _, f := range x.Firms {
		fmt.Fprintf(&b, "firm %s", f.Number)
		if f.Name != "" {
			fmt.Fprintf(&b, " %q", f.Name)
		}
		if f.Type != "" {
			fmt.Fprintf(&b, " %s", f.Type)
		}
		b.WriteString("\n")
		if f.Note != "" {
			fmt.Fprintf(&b, "  %s\n", f.Note)
		}
		var quiet []string
		for _, r := range f.Roles {
			if !r.Desired && !r.Held && (x.Ineligible != "" || len(r.WhyNot) == 1 && (r.WhyNot[0] == "no rule grants it" || strings.HasPrefix(r.WhyNot[0], "not allowed for firm type"))) {
				quiet = append(quiet, r.Role)
				continue
			}
			writeRole(&b, r, x.Deprovisioned)
		}
		if len(quiet) > 0 {
			fmt.Fprintf(&b, "  - not held (no rule applies, or not allowed for the firm type): %s\n", strings.Join(quiet, ", "))
		}
	}
	for _, r := range x.Other {
		b.WriteString("other firms\n")
		writeRole(&b, r, x.Deprovisioned)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeRole(b *strings.Builder, r RoleExplanation, deprovisioned bool) {
	mark := "-"
	state := "not held"
	switch {
	case r.Desired && r.Held:
		mark, state = "+", "held"
	case r.Desired:
		mark, state = "+", "to be granted"
	case r.Held:
		mark, state = "!", "held, not from rules"
	}
	if r.Held && !r.Desired {
		for _, p := range r.Provenance {
			if p.Kind == directory.ProvRule {
				state = "held, to be revoked"
			}
		}
		if deprovisioned {
			state = "held, to be revoked"
		}
	}
	fmt.Fprintf(b, "  %s %s: %s", mark, r.Role, state)
	if r.Scope != "" {
		fmt.Fprintf(b, " [%s]", r.Scope)
	}
	if r.ScopeChange != "" {
		fmt.Fprintf(b, ", to be changed to [%s]", r.ScopeChange)
	}
	b.WriteString("\n")
	for _, w := range r.Why {
		fmt.Fprintf(b, "      why: %s\n", w)
	}
	for _, w := range r.WhyNot {
		fmt.Fprintf(b, "      why not: %s\n", w)
	}
}
