package mapping

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/dirsyncd/dirsyncd/directory"
)

// Fixture is a small world of firms and users for `dirsyncd rules test
// FILE`: it lets rule authors see the grants rules produce without a store.
type Fixture struct {
	Firms []FixtureFirm `yaml:"firms"`
	Users []FixtureUser `yaml:"users"`
}

// FixtureFirm is a firm with its active offices.
type FixtureFirm struct {
	Number   string             `yaml:"number"`
	Name     string             `yaml:"name"`
	Type     directory.FirmType `yaml:"type"`
	Disabled bool               `yaml:"disabled"`
	Offices  []string           `yaml:"offices"`
}

// FixtureUser is a user with the facts rules look at.
type FixtureUser struct {
	UserName   string         `yaml:"userName"`
	Inactive   bool           `yaml:"inactive"`
	UserType   string         `yaml:"userType"`
	Firms      []string       `yaml:"firms"` // the first is the primary firm
	Groups     []string       `yaml:"groups"`
	GroupDNs   []string       `yaml:"groupDNs"`
	Attributes map[string]any `yaml:"attributes"`
	Legacy     []struct {
		Login   string   `yaml:"login"`
		Firm    string   `yaml:"firm"`
		Offices []string `yaml:"offices"`
	} `yaml:"legacy"`
}

// LoadFixture reads a fixture file.
func LoadFixture(path string) (*Fixture, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mapping: read fixture: %w", err)
	}
	var f Fixture
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("mapping: fixture %s: %w", path, err)
	}
	return &f, nil
}

// Facts turns the fixture into per-user facts.
func (fx *Fixture) Facts() ([]*Facts, error) {
	firms := map[string]directory.Firm{}
	offices := map[string][]directory.Office{}
	for _, f := range fx.Firms {
		if !f.Type.Valid() {
			return nil, fmt.Errorf("mapping: fixture firm %s: unknown type %q", f.Number, f.Type)
		}
		firms[f.Number] = directory.Firm{Number: f.Number, Name: f.Name, Type: f.Type, Enabled: !f.Disabled}
		for _, o := range f.Offices {
			offices[f.Number] = append(offices[f.Number], directory.Office{Code: o, FirmNumber: f.Number, Active: true})
		}
	}
	var out []*Facts
	for i, u := range fx.Users {
		id := fmt.Sprintf("user-%d", i+1)
		attrs, err := json.Marshal(u.Attributes)
		if err != nil {
			return nil, fmt.Errorf("mapping: fixture user %s: attributes: %w", u.UserName, err)
		}
		f := &Facts{
			User:    directory.User{ID: id, UserName: u.UserName, Active: !u.Inactive, UserType: u.UserType, Attrs: attrs},
			Firms:   firms,
			Offices: offices,
		}
		for j, fn := range u.Firms {
			if j == 0 {
				f.User.FirmNumber = fn
			}
			f.Memberships = append(f.Memberships, directory.FirmMembership{UserID: id, FirmNumber: fn, Source: "fixture"})
		}
		for _, g := range u.Groups {
			f.Groups = append(f.Groups, GroupFact{Group: directory.Group{ID: g, Source: "fixture", DisplayName: g}})
		}
		for _, dn := range u.GroupDNs {
			f.Groups = append(f.Groups, GroupFact{Group: directory.Group{ID: dn, Source: "fixture", DisplayName: dn, DN: dn}})
		}
		for _, l := range u.Legacy {
			f.LegacyLogins = append(f.LegacyLogins, directory.LegacyLogin{Login: l.Login, FirmNumber: l.Firm, OfficeCodes: l.Offices, UserID: id})
		}
		out = append(out, f)
	}
	return out, nil
}

// RunFixture evaluates every fixture user and prints their grants.
func (e *Engine) RunFixture(fx *Fixture, w io.Writer) error {
	facts, err := fx.Facts()
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, f := range facts {
		r := e.Evaluate(f)
		fmt.Fprintf(&b, "%s: %s\n", f.User.UserName, r.Status)
		if r.Ineligible != "" {
			fmt.Fprintf(&b, "  nothing: %s\n", r.Ineligible)
		}
		for _, d := range r.Grants {
			g := d.Grant
			fmt.Fprintf(&b, "  + firm %s %s/%s [%s]\n", g.FirmNumber, g.Service, g.Role, grantScope(g))
			for _, why := range d.Reasons {
				fmt.Fprintf(&b, "      %s\n", why)
			}
		}
		for _, d := range r.Denied {
			fmt.Fprintf(&b, "  - firm %s %s refused (rule %s): %s\n", d.Firm, d.Role, d.Rule, d.Reason)
		}
		for _, c := range r.Conflicts {
			fmt.Fprintf(&b, "  - firm %s %s refused (rule %s): conflicts with %s given by %s\n", c.Firm, c.Role, c.Rule, c.With, c.WithBy)
		}
	}
	_, err = io.WriteString(w, b.String())
	return err
}
