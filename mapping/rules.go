package mapping

import (
	"fmt"
	"os"
	"path"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/dirsyncd/dirsyncd/directory"
)

// RuleSet is the ordered list of mapping rules (configs/rules.yaml). Rules
// are evaluated in order; when two granted roles conflict, the one granted by
// the earlier rule wins.
type RuleSet struct {
	Rules []*Rule `yaml:"rules"`
}

// Rule grants roles to users that match every criterion it sets.
type Rule struct {
	Name        string  `yaml:"name"`
	Description string  `yaml:"description"`
	Match       Match   `yaml:"match"`
	Grants      []Grant `yaml:"grants"`
	// Admin must be true for a rule to grant an admin role.
	Admin bool `yaml:"admin"`
}

// Match holds a rule's criteria; every criterion set must hold (AND), and
// within a list any value may match (OR). An empty Match matches every user
// with a firm.
type Match struct {
	// Groups: the user is a member (directly or through nested groups) of
	// one of these groups.
	Groups []GroupMatch `yaml:"groups"`
	// Attributes: each named user attribute has one of the listed values
	// (case-insensitive; '*' and '?' globs allowed). Names are user fields
	// (userName, email, userType, firmNumber, usualRole, location,
	// displayName) or keys of the user's attrs, dotted for nested objects.
	Attributes map[string][]string `yaml:"attributes"`
	// FirmTypes: the firm the grant is for has one of these types.
	FirmTypes []directory.FirmType `yaml:"firmTypes"`
	// UserTypes: the user's userType is one of these (case-insensitive).
	UserTypes []string `yaml:"userTypes"`
	// Legacy: the user has a legacy CWA login in the firm (with access to one
	// of Offices, when listed).
	Legacy *LegacyMatch `yaml:"legacy"`
}

// GroupMatch selects groups by exactly one of Name (display name,
// case-insensitive), DN (case-insensitive) or Pattern (a glob over the display
// name, case-insensitive), optionally only from one Source.
type GroupMatch struct {
	Name    string `yaml:"name"`
	DN      string `yaml:"dn"`
	Pattern string `yaml:"pattern"`
	Source  string `yaml:"source"`

	lname, ldn, lpattern string // compiled by NewEngine
	prefix               string // lpattern without its one trailing '*'
	isPrefix             bool   // lpattern is prefix + "*"
}

// LegacyMatch matches legacy CWA office access.
type LegacyMatch struct {
	Offices []string `yaml:"offices"` // empty: any legacy login in the firm
}

// Grant is one role a rule grants. Role is "service/role"; a Service alone
// names an autoGrant service, whose sole role is granted.
type Grant struct {
	Role    string       `yaml:"role"`
	Service string       `yaml:"service"`
	Offices *OfficeScope `yaml:"offices"`
}

// OfficeScope picks the offices of a grant: exactly one of All (every office
// of the firm, following offices added later; the default), Attribute (office
// codes held in a user attribute), List (these codes) or Legacy (the offices
// of the user's legacy CWA logins in the firm). Offices that do not belong
// to the firm, or are inactive, are always dropped.
type OfficeScope struct {
	All       bool     `yaml:"all"`
	Attribute string   `yaml:"attribute"`
	List      []string `yaml:"list"`
	Legacy    bool     `yaml:"legacy"`
}

func (s *OfficeScope) String() string {
	switch {
	case s == nil || s.All:
		return "all offices of the firm"
	case s.Attribute != "":
		return "offices from attribute " + s.Attribute
	case len(s.List) > 0:
		return "offices " + strings.Join(s.List, ",")
	case s.Legacy:
		return "legacy CWA offices"
	}
	return "no offices"
}

// LoadRules reads a rules file and validates it against cat.
func LoadRules(path string, cat *Catalogue) (*RuleSet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mapping: read rules: %w", err)
	}
	rs, err := ParseRules(b, cat)
	if err != nil {
		return nil, fmt.Errorf("mapping: rules %s: %w", path, err)
	}
	return rs, nil
}

// ParseRules parses rules and validates them against cat, reporting every
// problem at once.
func ParseRules(b []byte, cat *Catalogue) (*RuleSet, error) {
	var rs RuleSet
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&rs); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if err := rs.Validate(cat); err != nil {
		return nil, err
	}
	return &rs, nil
}

// Validate checks every rule against the catalogue: unknown roles, services
// and firm types, admin roles without admin: true, malformed matches and
// office scopes.
func (rs *RuleSet) Validate(cat *Catalogue) error {
	var p problems
	names := map[string]bool{}
	for i, r := range rs.Rules {
		if r == nil {
			p.addf("rules[%d]: empty", i)
			continue
		}
		at := fmt.Sprintf("rules[%d]", i)
		if r.Name == "" {
			p.addf("%s: name is required", at)
		} else {
			at = fmt.Sprintf("rule %q", r.Name)
			if names[r.Name] {
				p.addf("%s: duplicate name", at)
			}
			names[r.Name] = true
		}
		for j, g := range r.Match.Groups {
			n := 0
			for _, v := range []string{g.Name, g.DN, g.Pattern} {
				if v != "" {
					n++
				}
			}
			if n != 1 {
				p.addf("%s: match.groups[%d]: set exactly one of name, dn, pattern", at, j)
			}
			if g.Pattern != "" {
				if _, err := path.Match(g.Pattern, ""); err != nil {
					p.addf("%s: match.groups[%d]: bad pattern %q: %v", at, j, g.Pattern, err)
				}
			}
		}
		for k, vs := range r.Match.Attributes {
			if k == "" || len(vs) == 0 {
				p.addf("%s: match.attributes: %q needs at least one value", at, k)
			}
			for _, v := range vs {
				if _, err := path.Match(strings.ToLower(v), ""); err != nil {
					p.addf("%s: match.attributes[%s]: bad pattern %q: %v", at, k, v, err)
				}
			}
		}
		for _, t := range r.Match.FirmTypes {
			if !t.Valid() {
				p.addf("%s: match.firmTypes: unknown firm type %q", at, t)
			}
		}
		if r.Match.Legacy != nil {
			for _, o := range r.Match.Legacy.Offices {
				if !officeCodeOK(o) {
					p.addf("%s: match.legacy.offices: %q is not an office code", at, o)
				}
			}
		}
		if len(r.Grants) == 0 {
			p.addf("%s: grants nothing", at)
		}
		for j, g := range r.Grants {
			gat := fmt.Sprintf("%s: grants[%d]", at, j)
			role, err := cat.resolveGrant(g)
			if err != nil {
				p.addf("%s: %v", gat, err)
			} else {
				if role.Admin && !r.Admin {
					p.addf("%s: %s is an admin role; the rule must say admin: true", gat, role.ID())
				}
				for _, t := range r.Match.FirmTypes {
					if !role.Eligible(t) {
						p.addf("%s: %s is not allowed for firm type %s matched by the rule", gat, role.ID(), t)
					}
				}
			}
			if s := g.Offices; s != nil {
				n := 0
				if s.All {
					n++
				}
				if s.Attribute != "" {
					n++
				}
				if len(s.List) > 0 {
					n++
				}
				if s.Legacy {
					n++
				}
				if n != 1 {
					p.addf("%s: offices: set exactly one of all, attribute, list, legacy", gat)
				}
				for _, o := range s.List {
					if !officeCodeOK(o) {
						p.addf("%s: offices.list: %q is not an office code", gat, o)
					}
				}
			}
		}
	}
	return p.err()
}

// resolveGrant finds the role a rule grant names.
func (c *Catalogue) resolveGrant(g Grant) (*Role, error) {
	switch {
	case g.Role != "" && g.Service != "":
		return nil, fmt.Errorf("set role (service/role) or service, not both")
	case g.Role != "":
		if !strings.Contains(g.Role, "/") {
			return nil, fmt.Errorf("role %q must be written service/role", g.Role)
		}
		r, ok := c.Role(g.Role)
		if !ok {
			return nil, fmt.Errorf("unknown role %q", g.Role)
		}
		return r, nil
	case g.Service != "":
		s, ok := c.Service(g.Service)
		if !ok {
			return nil, fmt.Errorf("unknown service %q", g.Service)
		}
		if !s.AutoGrant {
			return nil, fmt.Errorf("service %q has no automatic role; name a role", g.Service)
		}
		return s.Roles[0], nil
	}
	return nil, fmt.Errorf("names no role")
}

func officeCodeOK(s string) bool {
	if len(s) != 6 {
		return false
	}
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
