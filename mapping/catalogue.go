package mapping

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/dirsyncd/dirsyncd/directory"
)

// Catalogue is the role catalogue (configs/catalogue.yaml): services and
// their roles. Load it with LoadCatalogue or ParseCatalogue, which validate.
type Catalogue struct {
	Services []*Service `yaml:"services"`

	roles map[string]*Role // by "service/role"
	svcs  map[string]*Service
}

// Service is an online service a user can be given access to.
type Service struct {
	Slug string `yaml:"slug"`
	Name string `yaml:"name"`
	// AutoGrant: the service has exactly one role, granted automatically
	// with the service (a rule may name the service without a role).
	AutoGrant bool `yaml:"autoGrant"`
	// Bands are permission bands ordered lowest first (e.g. basic, standard,
	// unrestricted). A permission excluded at a band is also excluded at
	// every lower band.
	Bands []*Band `yaml:"bands"`
	Roles []*Role `yaml:"roles"`
}

// Band is one permission band and the permissions it excludes.
type Band struct {
	Name     string   `yaml:"name"`
	Excludes []string `yaml:"excludes"`
}

// Role is a role of a service.
type Role struct {
	Slug string `yaml:"slug"`
	Name string `yaml:"name"`
	// FirmTypes the role may be granted in; empty = every firm type.
	FirmTypes []directory.FirmType `yaml:"firmTypes"`
	// Admin roles are never given by a firm admin; a rule must say admin: true.
	Admin bool `yaml:"admin"`
	// CCMSCode is the CCMS responsibility key pushed downstream.
	CCMSCode string `yaml:"ccmsCode"`
	// NeedsOffices: a holder without any office is Incomplete.
	NeedsOffices bool `yaml:"needsOffices"`
	// Implies lists roles this role includes (parent/child inheritance): a
	// holder also gets them, with the same office scope. "role" names a role
	// of the same service, "service/role" any role.
	Implies []string `yaml:"implies"`
	// Conflicts lists roles that must not be held together with this one
	// (symmetric).
	Conflicts []string `yaml:"conflicts"`
	// Special roles add privileges to a primary role without replacing it:
	// they are granted only to a holder of one of Requires.
	Special  bool     `yaml:"special"`
	Requires []string `yaml:"requires"`
	// Band places the role in one of its service's bands.
	Band string `yaml:"band"`
	// Permissions the role carries (in addition to implied roles').
	Permissions []string `yaml:"permissions"`
	// Overrides are band exclusions a special role lifts.
	Overrides []string `yaml:"overrides"`

	service   *Service
	implies   []*Role
	conflicts []*Role
	requires  []*Role
}

// ID is the role's global id, "service/role".
func (r *Role) ID() string { return r.service.Slug + "/" + r.Slug }

// Service returns the service slug.
func (r *Role) ServiceSlug() string { return r.service.Slug }

// Eligible reports whether the role may be granted in a firm of type t.
func (r *Role) Eligible(t directory.FirmType) bool {
	return len(r.FirmTypes) == 0 || slices.Contains(r.FirmTypes, t)
}

// ImpliedRoles returns the roles r directly implies.
func (r *Role) ImpliedRoles() []*Role { return r.implies }

// ConflictingRoles returns the roles r must not be held with.
func (r *Role) ConflictingRoles() []*Role { return r.conflicts }

// RequiredRoles returns, for a special role, the primary roles one of which
// must be held.
func (r *Role) RequiredRoles() []*Role { return r.requires }

// LoadCatalogue reads and validates a catalogue file.
func LoadCatalogue(path string) (*Catalogue, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mapping: read catalogue: %w", err)
	}
	c, err := ParseCatalogue(b)
	if err != nil {
		return nil, fmt.Errorf("mapping: catalogue %s: %w", path, err)
	}
	return c, nil
}

// ParseCatalogue parses and validates a catalogue document; the error lists
// every problem found (a *ProblemsError).
func ParseCatalogue(b []byte) (*Catalogue, error) {
	var c Catalogue
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if err := c.build(); err != nil {
		return nil, err
	}
	return &c, nil
}

// ProblemsError lists every validation problem at once.
type ProblemsError struct{ Problems []string }

func (e *ProblemsError) Error() string {
	return fmt.Sprintf("%d problem(s):\n  - %s", len(e.Problems), strings.Join(e.Problems, "\n  - "))
}

type problems []string

func (p *problems) addf(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }
func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return &ProblemsError{Problems: p}
}

// Role returns the role with id "service/role".
func (c *Catalogue) Role(id string) (*Role, bool) { r, ok := c.roles[id]; return r, ok }

// Service returns a service by slug.
func (c *Catalogue) Service(slug string) (*Service, bool) { s, ok := c.svcs[slug]; return s, ok }

// RoleOf returns the role slug of service.
func (c *Catalogue) RoleOf(service, role string) (*Role, bool) { return c.Role(service + "/" + role) }

// Roles returns every role in catalogue order.
func (c *Catalogue) Roles() []*Role {
	var out []*Role
	for _, s := range c.Services {
		out = append(out, s.Roles...)
	}
	return out
}

var slugOK = func(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func (c *Catalogue) build() error {
	var p problems
	c.roles = map[string]*Role{}
	c.svcs = map[string]*Service{}
	if len(c.Services) == 0 {
		p.addf("services: none defined")
	}
	for i, s := range c.Services {
		if s == nil {
			p.addf("services[%d]: empty", i)
			continue
		}
		if !slugOK(s.Slug) {
			p.addf("services[%d]: slug %q must be lower-case letters, digits and '-'", i, s.Slug)
		}
		if _, dup := c.svcs[s.Slug]; dup {
			p.addf("services[%d]: duplicate service %q", i, s.Slug)
		}
		c.svcs[s.Slug] = s
		if len(s.Roles) == 0 {
			p.addf("service %s: no roles", s.Slug)
		}
		if s.AutoGrant && len(s.Roles) != 1 {
			p.addf("service %s: autoGrant needs exactly one role, has %d", s.Slug, len(s.Roles))
		}
		bands := map[string]bool{}
		for _, b := range s.Bands {
			if b.Name == "" || bands[b.Name] {
				p.addf("service %s: band %q empty or duplicate", s.Slug, b.Name)
			}
			bands[b.Name] = true
		}
		for j, r := range s.Roles {
			if r == nil {
				p.addf("service %s: roles[%d] empty", s.Slug, j)
				continue
			}
			r.service = s
			if !slugOK(r.Slug) {
				p.addf("service %s: roles[%d]: slug %q must be lower-case letters, digits and '-'", s.Slug, j, r.Slug)
			}
			if _, dup := c.roles[r.ID()]; dup {
				p.addf("role %s: duplicate", r.ID())
			}
			c.roles[r.ID()] = r
			for _, t := range r.FirmTypes {
				if !t.Valid() {
					p.addf("role %s: unknown firm type %q", r.ID(), t)
				}
			}
			if r.Band != "" && !bands[r.Band] {
				p.addf("role %s: unknown band %q", r.ID(), r.Band)
			}
			if r.Special && len(r.Requires) == 0 {
				p.addf("role %s: special role must list the primary roles it requires", r.ID())
			}
			if !r.Special && len(r.Requires) > 0 {
				p.addf("role %s: requires is only for special roles", r.ID())
			}
			if len(r.Overrides) > 0 && !r.Special {
				p.addf("role %s: only special roles may override band exclusions", r.ID())
			}
		}
	}
	resolve := func(r *Role, field string, refs []string) []*Role {
		var out []*Role
		for _, ref := range refs {
			id := ref
			if !strings.Contains(ref, "/") {
				id = r.service.Slug + "/" + ref
			}
			t, ok := c.roles[id]
			if !ok {
				p.addf("role %s: %s: unknown role %q", r.ID(), field, ref)
				continue
			}
			if t == r {
				p.addf("role %s: %s: refers to itself", r.ID(), field)
				continue
			}
			out = append(out, t)
		}
		return out
	}
	for _, r := range c.Roles() {
		if r == nil || r.service == nil {
			continue
		}
		r.implies = resolve(r, "implies", r.Implies)
		r.conflicts = resolve(r, "conflicts", r.Conflicts)
		r.requires = resolve(r, "requires", r.Requires)
	}
	// conflicts are symmetric
	for _, r := range c.Roles() {
		if r == nil {
			continue
		}
		for _, o := range r.conflicts {
			if !slices.Contains(o.conflicts, r) {
				o.conflicts = append(o.conflicts, r)
			}
		}
	}
	// cycles in implies, and per role: what it implies must be eligible
	// wherever it is, and must not conflict with it.
	c.checkCycles(&p)
	for _, r := range c.Roles() {
		if r == nil || r.service == nil {
			continue
		}
		for _, t := range c.closure(r) {
			if t == r {
				continue
			}
			for _, ft := range firmTypesOf(r) {
				if !t.Eligible(ft) {
					p.addf("role %s: implies %s, which is not allowed for firm type %s", r.ID(), t.ID(), ft)
				}
			}
			if t.Admin && !r.Admin {
				p.addf("role %s: implies admin role %s but is not an admin role", r.ID(), t.ID())
			}
			if slices.Contains(r.conflicts, t) {
				p.addf("role %s: implies %s, which it conflicts with", r.ID(), t.ID())
			}
		}
	}
	return p.err()
}

func firmTypesOf(r *Role) []directory.FirmType {
	if len(r.FirmTypes) == 0 {
		return []directory.FirmType{directory.FirmLegalServicesProvider, directory.FirmChambers, directory.FirmAdvocate}
	}
	return r.FirmTypes
}

func (c *Catalogue) checkCycles(p *problems) {
	const (
		white = iota
		grey
		black
	)
	colour := map[*Role]int{}
	reported := map[string]bool{}
	var stack []*Role
	var visit func(r *Role)
	visit = func(r *Role) {
		colour[r] = grey
		stack = append(stack, r)
		for _, t := range r.implies {
			switch colour[t] {
			case white:
				visit(t)
			case grey:
				i := slices.Index(stack, t)
				var ids []string
				for _, s := range stack[i:] {
					ids = append(ids, s.ID())
				}
				ids = append(ids, t.ID())
				key := canonicalCycle(ids[:len(ids)-1])
				if !reported[key] {
					reported[key] = true
					p.addf("implies cycle: %s", strings.Join(ids, " -> "))
				}
			}
		}
		stack = stack[:len(stack)-1]
		colour[r] = black
	}
	for _, r := range c.Roles() {
		if r != nil && r.service != nil && colour[r] == white {
			visit(r)
		}
	}
}

func canonicalCycle(ids []string) string {
	s := slices.Clone(ids)
	sort.Strings(s)
	return strings.Join(s, ",")
}

// closure returns r and every role it implies, transitively (cycle-safe).
func (c *Catalogue) closure(r *Role) []*Role {
	seen := map[*Role]bool{}
	var out []*Role
	var walk func(*Role)
	walk = func(x *Role) {
		if seen[x] {
			return
		}
		seen[x] = true
		out = append(out, x)
		for _, t := range x.implies {
			walk(t)
		}
	}
	walk(r)
	return out
}

// EffectivePermissions computes what a holder of the given roles (ids
// "service/role") may do in service: the roles' permissions and those of the
// roles they imply, minus the exclusions of each role's band and every band
// above it ("exclusions, not inclusions, control permissions"), plus what held
// special roles override. Exclusions apply per role: a role's permission is
// removed only by its own band.
func (c *Catalogue) EffectivePermissions(service string, roleIDs []string) ([]string, error) {
	s, ok := c.svcs[service]
	if !ok {
		return nil, fmt.Errorf("mapping: unknown service %q", service)
	}
	perm := map[string]bool{}
	var overrides []string
	for _, id := range roleIDs {
		r, ok := c.roles[id]
		if !ok {
			return nil, fmt.Errorf("mapping: unknown role %q", id)
		}
		if r.service != s {
			continue
		}
		excluded := s.excludedAt(r.Band)
		for _, x := range c.closure(r) {
			for _, pm := range x.Permissions {
				if !excluded[pm] {
					perm[pm] = true
				}
			}
		}
		overrides = append(overrides, r.Overrides...)
	}
	for _, o := range overrides {
		perm[o] = true
	}
	out := make([]string, 0, len(perm))
	for k := range perm {
		out = append(out, k)
	}
	sort.Strings(out)
	return out, nil
}

// excludedAt returns the exclusions at band and every band above it.
func (s *Service) excludedAt(band string) map[string]bool {
	ex := map[string]bool{}
	if band == "" {
		return ex
	}
	i := slices.IndexFunc(s.Bands, func(b *Band) bool { return b.Name == band })
	if i < 0 {
		return ex
	}
	for _, b := range s.Bands[i:] {
		for _, e := range b.Excludes {
			ex[e] = true
		}
	}
	return ex
}
