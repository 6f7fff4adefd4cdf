package mapping

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/dirsyncd/dirsyncd/directory"
)

// Facts is everything the engine knows about one user. Firms and Offices
// may be shared maps covering every firm (the engine only reads them).
type Facts struct {
	User         directory.User
	Links        []directory.SourceLink
	Groups       []GroupFact                   // direct and nested memberships
	Memberships  []directory.FirmMembership    // firm profiles
	Firms        map[string]directory.Firm     // by number; at least the user's firms
	Offices      map[string][]directory.Office // by firm number
	LegacyLogins []directory.LegacyLogin       // legacy CWA logins linked to the user
	Grants       []directory.Grant             // actual grants (Explain, status, conflicts)
}

// GroupFact is a group the user belongs to. Via is empty for a direct
// membership; for a nested one it lists the groups from the direct one up to
// (not including) this group.
type GroupFact struct {
	Group directory.Group
	Via   []string
}

// Status is the user's completeness (DOMAIN.md).
type Status string

// Statuses.
const (
	StatusIncomplete Status = "Incomplete"
	StatusComplete   Status = "Complete"
)

// Desired is a grant the rules produce, with its human-readable reasons. Its
// Provenance holds one ProvRule entry per rule that produced it.
type Desired struct {
	Grant   directory.Grant
	Reasons []string
}

// Denial is a role a matching rule would grant but the engine refused.
type Denial struct {
	Firm, Role, Rule, Reason string
}

// Conflict is a role refused because it conflicts with one already held or
// granted by an earlier rule.
type Conflict struct {
	Firm, Role, Rule string
	With, WithBy     string // the conflicting role and what gives it
}

// Result is the engine's answer for one user.
type Result struct {
	UserID string
	// Ineligible says why the user gets nothing (deleted, inactive, every
	// source gone); empty when rules were evaluated.
	Ineligible string
	Grants     []Desired // sorted by (firm, service, role)
	Denied     []Denial
	Conflicts  []Conflict
	Status     Status
	trace      []ruleTrace
}

type ruleTrace struct {
	rule    *Rule
	firm    string
	matched bool
	detail  string // match detail or why not
}

// Engine evaluates rules against facts. It is safe for concurrent use.
type Engine struct {
	cat   *Catalogue
	rules *RuleSet
	// grantsOf maps a role id to the rules that grant it (directly or by
	// implication), for Explain.
	grantsOf map[string][]*Rule
}

// NewEngine returns an engine; rs must have been validated against cat.
func NewEngine(cat *Catalogue, rs *RuleSet) *Engine {
	e := &Engine{cat: cat, rules: rs, grantsOf: map[string][]*Rule{}}
	for _, r := range rs.Rules {
		for i := range r.Match.Groups {
			g := &r.Match.Groups[i]
			g.lname, g.lpattern = strings.ToLower(g.Name), strings.ToLower(g.Pattern)
			if p, ok := strings.CutSuffix(g.lpattern, "*"); ok && !strings.ContainsAny(p, `*?[\`) {
				g.prefix, g.isPrefix = p, true // "LAA Crime*": a plain prefix test
			}
			if g.DN != "" {
				g.ldn = normDN(g.DN)
			}
		}
		for _, g := range r.Grants {
			role, err := cat.resolveGrant(g)
			if err != nil {
				continue
			}
			for _, x := range cat.closure(role) {
				if !slices.Contains(e.grantsOf[x.ID()], r) {
					e.grantsOf[x.ID()] = append(e.grantsOf[x.ID()], r)
				}
			}
		}
	}
	return e
}

// NeedsOnlyGroupsOrLegacy reports whether every rule requires a group
// membership or a legacy CWA login: then a user with neither can be granted
// nothing, and a reconcile may skip reading the rest of their facts.
func (e *Engine) NeedsOnlyGroupsOrLegacy() bool {
	for _, r := range e.rules.Rules {
		if len(r.Match.Groups) == 0 && r.Match.Legacy == nil {
			return false
		}
	}
	return true
}

// Catalogue returns the engine's catalogue.
func (e *Engine) Catalogue() *Catalogue { return e.cat }

// Rules returns the engine's rules.
func (e *Engine) Rules() *RuleSet { return e.rules }

// Ineligible says why a user must get no grant at all, or "".
func Ineligible(u directory.User, links []directory.SourceLink) string {
	switch {
	case u.DeletedAt != nil:
		return "user is deleted"
	case !u.Active:
		return "user is inactive"
	}
	if len(links) > 0 {
		for _, l := range links {
			if l.GoneAt == nil {
				return ""
			}
		}
		return "every source of the user is gone"
	}
	return ""
}

// Evaluate computes the desired grants of one user.
func (e *Engine) Evaluate(f *Facts) Result { return e.evaluate(f, false) }

func (e *Engine) evaluate(f *Facts, trace bool) Result {
	res := Result{UserID: f.User.ID}
	if why := Ineligible(f.User, f.Links); why != "" {
		res.Ineligible = why
		res.Status = StatusIncomplete
		return res
	}
	ev := evalCtx{f: f}
	firms := userFirms(f)
	desired := map[directory.GrantKey]*Desired{}
	var order []directory.GrantKey
	givenBy := map[directory.GrantKey]string{}

	// roles held other than by rules count for conflicts and special roles
	manual := map[directory.GrantKey]bool{}
	for _, g := range f.Grants {
		if hasNonRule(g) {
			manual[g.Key()] = true
		}
	}

	for _, fn := range firms {
		firm, ok := f.Firms[fn]
		if !ok {
			if trace {
				res.trace = append(res.trace, ruleTrace{firm: fn, detail: "firm " + fn + " is unknown"})
			}
			continue
		}
		if !firm.Enabled {
			if trace {
				res.trace = append(res.trace, ruleTrace{firm: fn, detail: "firm " + fn + " is disabled"})
			}
			continue
		}
		for _, r := range e.rules.Rules {
			detail, ok := ev.match(r, firm, trace)
			if trace {
				res.trace = append(res.trace, ruleTrace{rule: r, firm: fn, matched: ok, detail: detail})
			}
			if !ok {
				continue
			}
			for _, g := range r.Grants {
				role, err := e.cat.resolveGrant(g)
				if err != nil {
					continue
				}
				scope, scopeNote := ev.scope(g.Offices, firm)
				for _, x := range e.cat.closure(role) {
					why := detail
					if x != role {
						why = detail + "; implied by " + role.ID()
					}
					k := directory.GrantKey{UserID: f.User.ID, FirmNumber: fn, Service: x.service.Slug, Role: x.Slug}
					if reason := e.refuse(r, x, firm, scope); reason != "" {
						res.Denied = append(res.Denied, Denial{Firm: fn, Role: x.ID(), Rule: r.Name, Reason: reason + scopeNote})
						continue
					}
					if c := e.conflict(x, fn, f.User.ID, desired, manual, givenBy); c != nil {
						c.Rule = r.Name
						res.Conflicts = append(res.Conflicts, *c)
						continue
					}
					prov := directory.Provenance{Kind: directory.ProvRule, Ref: r.Name, Detail: why}
					reason := "rule " + r.Name + ": " + why + "; " + scopeString(scope) + scopeNote
					if d, ok := desired[k]; ok {
						d.Grant.AllOffices, d.Grant.Offices = unionScope(d.Grant, scope)
						if !hasProv(d.Grant.Provenance, prov) {
							d.Grant.Provenance = append(d.Grant.Provenance, prov)
						}
						d.Reasons = append(d.Reasons, reason)
						continue
					}
					desired[k] = &Desired{
						Grant: directory.Grant{
							UserID: f.User.ID, FirmNumber: fn, Service: x.service.Slug, Role: x.Slug,
							AllOffices: scope.all, Offices: scope.offices,
							Provenance: []directory.Provenance{prov},
						},
						Reasons: []string{reason},
					}
					givenBy[k] = "rule " + r.Name
					order = append(order, k)
				}
			}
		}
	}
	// special roles need one of their primary roles in the same firm
	for _, k := range order {
		role, _ := e.cat.RoleOf(k.Service, k.Role)
		if !role.Special {
			continue
		}
		ok := false
		for _, req := range role.requires {
			rk := directory.GrantKey{UserID: k.UserID, FirmNumber: k.FirmNumber, Service: req.service.Slug, Role: req.Slug}
			if _, d := desired[rk]; d || manual[rk] {
				ok = true
				break
			}
		}
		if !ok {
			var names []string
			for _, req := range role.requires {
				names = append(names, req.ID())
			}
			res.Denied = append(res.Denied, Denial{Firm: k.FirmNumber, Role: role.ID(), Rule: desired[k].Grant.Provenance[0].Ref,
				Reason: "special role needs one of " + strings.Join(names, ", ") + " in the firm"})
			delete(desired, k)
		}
	}
	res.Grants = make([]Desired, 0, len(desired))
	for _, k := range order {
		if d, ok := desired[k]; ok {
			res.Grants = append(res.Grants, *d)
		}
	}
	slices.SortFunc(res.Grants, func(a, b Desired) int { return keyCmp(a.Grant.Key(), b.Grant.Key()) })
	// status over what the user will hold: the desired grants plus manual or
	// source grants no rule produces
	var st statusAcc
	for i := range res.Grants {
		st.add(e, &res.Grants[i].Grant)
	}
	for i := range f.Grants {
		if _, ok := desired[f.Grants[i].Key()]; !ok && hasNonRule(f.Grants[i]) {
			st.add(e, &f.Grants[i])
		}
	}
	res.Status = st.status()
	return res
}

// refuse says why role x may not be granted by rule r in firm, or "".
func (e *Engine) refuse(r *Rule, x *Role, firm directory.Firm, s scope) string {
	switch {
	case x.Admin && !r.Admin:
		return "admin role, and the rule does not say admin: true"
	case !x.Eligible(firm.Type):
		return fmt.Sprintf("not allowed for firm type %s", firm.Type)
	case x.NeedsOffices && !s.all && len(s.offices) == 0:
		return fmt.Sprintf("needs offices, and no office of firm %s is in scope", firm.Number)
	}
	return ""
}

func (e *Engine) conflict(x *Role, firm, user string, desired map[directory.GrantKey]*Desired, manual map[directory.GrantKey]bool, givenBy map[directory.GrantKey]string) *Conflict {
	for _, o := range x.conflicts {
		k := directory.GrantKey{UserID: user, FirmNumber: firm, Service: o.service.Slug, Role: o.Slug}
		if _, ok := desired[k]; ok {
			return &Conflict{Firm: firm, Role: x.ID(), With: o.ID(), WithBy: givenBy[k]}
		}
		if manual[k] {
			return &Conflict{Firm: firm, Role: x.ID(), With: o.ID(), WithBy: "a manual grant"}
		}
	}
	return nil
}

// StatusOf computes Incomplete/Complete over the grants a user holds: a user
// without any service (non-admin) role, or holding a role that needs offices
// without an office, is Incomplete.
func (e *Engine) StatusOf(grants []directory.Grant) Status {
	var st statusAcc
	for i := range grants {
		st.add(e, &grants[i])
	}
	return st.status()
}

// statusAcc accumulates StatusOf over grants one at a time.
type statusAcc struct{ service, noOffice bool }

func (a *statusAcc) add(e *Engine, g *directory.Grant) {
	role, ok := e.cat.RoleOf(g.Service, g.Role)
	if !ok {
		return
	}
	if role.NeedsOffices && !g.AllOffices && len(g.Offices) == 0 {
		a.noOffice = true
	}
	if !role.Admin {
		a.service = true
	}
}

func (a *statusAcc) status() Status {
	if a.noOffice || !a.service {
		return StatusIncomplete
	}
	return StatusComplete
}

func hasNonRule(g directory.Grant) bool {
	for _, p := range g.Provenance {
		if p.Kind != directory.ProvRule {
			return true
		}
	}
	return false
}

func hasProv(ps []directory.Provenance, p directory.Provenance) bool {
	return slices.Contains(ps, p)
}

func keyLess(a, b directory.GrantKey) bool { return keyCmp(a, b) < 0 }

func keyCmp(a, b directory.GrantKey) int {
	if c := strings.Compare(a.UserID, b.UserID); c != 0 {
		return c
	}
	if c := strings.Compare(a.FirmNumber, b.FirmNumber); c != 0 {
		return c
	}
	if c := strings.Compare(a.Service, b.Service); c != 0 {
		return c
	}
	return strings.Compare(a.Role, b.Role)
}

// KeyLess orders grant keys by user, firm, service, role.
func KeyLess(a, b directory.GrantKey) bool { return keyLess(a, b) }

// userFirms returns the user's firms: memberships plus the primary firm.
func userFirms(f *Facts) []string {
	switch {
	case len(f.Memberships) == 0 && f.User.FirmNumber == "":
		return nil
	case len(f.Memberships) == 0:
		return []string{f.User.FirmNumber}
	case len(f.Memberships) == 1 && (f.User.FirmNumber == "" || f.User.FirmNumber == f.Memberships[0].FirmNumber):
		return []string{f.Memberships[0].FirmNumber}
	}
	var out []string
	for _, m := range f.Memberships {
		out = append(out, m.FirmNumber)
	}
	if f.User.FirmNumber != "" {
		out = append(out, f.User.FirmNumber)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

type scope struct {
	all     bool
	offices []string
}

func scopeString(s scope) string {
	if s.all {
		return "all offices"
	}
	if len(s.offices) == 0 {
		return "no offices"
	}
	return "offices " + strings.Join(s.offices, ",")
}

func unionScope(g directory.Grant, s scope) (bool, []string) {
	if g.AllOffices || s.all {
		return true, nil
	}
	out := append(slices.Clone(g.Offices), s.offices...)
	sort.Strings(out)
	return false, slices.Compact(out)
}

type evalCtx struct {
	f            *Facts
	attrs        map[string]any
	parsed       bool
	lnames, ldns []string // lower-cased group names and normalised DNs
}

// match evaluates r's criteria for firm; it returns what matched, or (with
// why) why not.
func (ev *evalCtx) match(r *Rule, firm directory.Firm, why bool) (string, bool) {
	var buf [5]string
	what := buf[:0]
	firmOK, userTypeOK := false, false
	m := &r.Match
	if len(m.FirmTypes) > 0 {
		if !slices.Contains(m.FirmTypes, firm.Type) {
			if !why {
				return "", false
			}
			return fmt.Sprintf("firm %s is %s, the rule wants %s", firm.Number, firm.Type, joinTypes(m.FirmTypes)), false
		}
		firmOK = true // detail built only if every criterion holds
	}
	if len(m.UserTypes) > 0 {
		ok := false
		for _, t := range m.UserTypes {
			if strings.EqualFold(t, ev.f.User.UserType) {
				ok = true
			}
		}
		if !ok {
			if !why {
				return "", false
			}
			return fmt.Sprintf("userType %q is not one of %s", ev.f.User.UserType, strings.Join(m.UserTypes, ", ")), false
		}
		userTypeOK = true
	}
	if len(m.Groups) > 0 {
		g, ok := ev.matchGroups(m.Groups)
		if !ok {
			if !why {
				return "", false
			}
			return "not a member of " + describeGroups(m.Groups), false
		}
		what = append(what, g)
	}
	if len(m.Attributes) > 0 {
		keys := make([]string, 0, len(m.Attributes))
		for k := range m.Attributes {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			vals := ev.attr(k)
			v, ok := matchValues(vals, m.Attributes[k])
			if !ok {
				if !why {
					return "", false
				}
				if len(vals) == 0 {
					return fmt.Sprintf("attribute %s is not set, the rule wants %s", k, strings.Join(m.Attributes[k], " or ")), false
				}
				return fmt.Sprintf("attribute %s is %s, the rule wants %s", k, strings.Join(vals, ","), strings.Join(m.Attributes[k], " or ")), false
			}
			what = append(what, fmt.Sprintf("attribute %s=%s", k, v))
		}
	}
	if m.Legacy != nil {
		login, ok := ev.matchLegacy(m.Legacy, firm.Number)
		if !ok {
			if !why {
				return "", false
			}
			if len(m.Legacy.Offices) > 0 {
				return fmt.Sprintf("no legacy CWA login in firm %s with access to %s", firm.Number, strings.Join(m.Legacy.Offices, ", ")), false
			}
			return fmt.Sprintf("no legacy CWA login in firm %s", firm.Number), false
		}
		what = append(what, "legacy CWA login "+login)
	}
	if userTypeOK {
		what = append([]string{"userType " + ev.f.User.UserType}, what...)
	}
	if firmOK {
		what = append([]string{"firm type " + string(firm.Type)}, what...)
	}
	if len(what) == 0 {
		what = append(what, "every user of firm "+firm.Number)
	}
	return strings.Join(what, ", "), true
}

func joinTypes(ts []directory.FirmType) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return strings.Join(s, " or ")
}

func describeGroups(gs []GroupMatch) string {
	var s []string
	for _, g := range gs {
		var d string
		switch {
		case g.Name != "":
			d = fmt.Sprintf("group %q", g.Name)
		case g.DN != "":
			d = fmt.Sprintf("group dn %q", g.DN)
		default:
			d = fmt.Sprintf("a group like %q", g.Pattern)
		}
		if g.Source != "" {
			d += " from " + g.Source
		}
		s = append(s, d)
	}
	return strings.Join(s, " or ")
}

func (ev *evalCtx) matchGroups(ms []GroupMatch) (string, bool) {
	if ev.lnames == nil {
		ev.lnames = make([]string, len(ev.f.Groups))
		ev.ldns = make([]string, len(ev.f.Groups))
		for i, gf := range ev.f.Groups {
			ev.lnames[i] = strings.ToLower(gf.Group.DisplayName)
			if gf.Group.DN != "" {
				ev.ldns[i] = normDN(gf.Group.DN)
			}
		}
	}
	for i, gf := range ev.f.Groups {
		g := &gf.Group
		if g.DeletedAt != nil {
			continue
		}
		for _, m := range ms {
			if m.Source != "" && m.Source != g.Source {
				continue
			}
			ok := false
			switch {
			case m.Name != "":
				ok = strings.EqualFold(m.Name, g.DisplayName)
			case m.DN != "":
				ldn := m.ldn
				if ldn == "" {
					ldn = normDN(m.DN)
				}
				ok = ev.ldns[i] != "" && ldn == ev.ldns[i]
			case m.isPrefix:
				ok = strings.HasPrefix(ev.lnames[i], m.prefix)
			case m.Pattern != "":
				lp := m.lpattern
				if lp == "" {
					lp = strings.ToLower(m.Pattern)
				}
				ok, _ = path.Match(lp, ev.lnames[i])
			}
			if ok {
				d := fmt.Sprintf("member of group %q", g.DisplayName)
				if len(gf.Via) > 0 {
					d += fmt.Sprintf(" (nested, via %s)", strings.Join(quoteAll(gf.Via), " > "))
				}
				return d, true
			}
		}
	}
	return "", false
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

func normDN(dn string) string {
	parts := strings.Split(dn, ",")
	for i, p := range parts {
		parts[i] = strings.ToLower(strings.TrimSpace(p))
		if k, v, ok := strings.Cut(parts[i], "="); ok {
			parts[i] = strings.TrimSpace(k) + "=" + strings.TrimSpace(v)
		}
	}
	return strings.Join(parts, ",")
}

func (ev *evalCtx) matchLegacy(m *LegacyMatch, firm string) (string, bool) {
	for _, l := range ev.f.LegacyLogins {
		if l.FirmNumber != firm {
			continue
		}
		if len(m.Offices) == 0 {
			return l.Login, true
		}
		for _, o := range m.Offices {
			if slices.Contains(l.OfficeCodes, o) {
				return l.Login + " (office " + o + ")", true
			}
		}
	}
	return "", false
}

func matchValues(have, want []string) (string, bool) {
	for _, h := range have {
		lh := strings.ToLower(h)
		for _, w := range want {
			if ok, _ := path.Match(strings.ToLower(w), lh); ok {
				return h, true
			}
		}
	}
	return "", false
}

// attr returns the values of a user attribute: a user field or a (dotted)
// key of the user's attrs.
func (ev *evalCtx) attr(name string) []string {
	u := &ev.f.User
	one := func(s string) []string {
		if s == "" {
			return nil
		}
		return []string{s}
	}
	switch name {
	case "userName":
		return one(u.UserName)
	case "email":
		return one(u.Email)
	case "userType":
		return one(u.UserType)
	case "firmNumber":
		return one(u.FirmNumber)
	case "usualRole":
		return one(u.UsualRole)
	case "location":
		return one(u.Location)
	case "displayName":
		return one(u.DisplayName)
	case "externalId":
		return one(u.ExternalID)
	}
	if !ev.parsed {
		ev.parsed = true
		if len(u.Attrs) > 0 {
			_ = json.Unmarshal(u.Attrs, &ev.attrs) // malformed attrs match nothing
		}
	}
	var cur any = ev.attrs
	if ev.attrs == nil {
		return nil
	}
	// try the whole name first (keys may contain dots, e.g. SCIM URNs)
	if v, ok := ev.attrs[name]; ok {
		return flatten(v)
	}
	for _, p := range strings.Split(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur, ok = m[p]
		if !ok {
			return nil
		}
	}
	return flatten(cur)
}

func flatten(v any) []string {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		if x == "" {
			return nil
		}
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, flatten(e)...)
		}
		return out
	case map[string]any:
		if val, ok := x["value"]; ok { // SCIM multi-valued {value: ...}
			return flatten(val)
		}
		return nil
	default:
		return []string{fmt.Sprint(x)}
	}
}

// scope computes an office scope in firm; the note says which offices were
// dropped (not of the firm, or inactive).
func (ev *evalCtx) scope(s *OfficeScope, firm directory.Firm) (scope, string) {
	if s == nil || s.All {
		return scope{all: true}, ""
	}
	var codes []string
	switch {
	case s.Attribute != "":
		for _, v := range ev.attr(s.Attribute) {
			for _, c := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == ';' }) {
				codes = append(codes, strings.ToUpper(c))
			}
		}
	case len(s.List) > 0:
		codes = s.List
	case s.Legacy:
		for _, l := range ev.f.LegacyLogins {
			if l.FirmNumber == firm.Number {
				codes = append(codes, l.OfficeCodes...)
			}
		}
	}
	firmOffices := ev.f.Offices[firm.Number]
	active := func(code string) bool {
		for i := range firmOffices {
			if o := &firmOffices[i]; o.Code == code {
				return o.Active && o.FirmNumber == firm.Number
			}
		}
		return false
	}
	var kept, dropped []string
	for _, c := range codes {
		if active(c) {
			kept = append(kept, c)
		} else {
			dropped = append(dropped, c)
		}
	}
	sort.Strings(kept)
	kept = slices.Compact(kept)
	note := ""
	if len(dropped) > 0 {
		sort.Strings(dropped)
		note = fmt.Sprintf(" (dropped %s: not an active office of firm %s)", strings.Join(slices.Compact(dropped), ","), firm.Number)
	}
	return scope{offices: kept}, note
}
