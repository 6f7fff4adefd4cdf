package mapping

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dirsyncd/dirsyncd/directory"
)

func loadLaunch(t *testing.T) (*Catalogue, *RuleSet) {
	t.Helper()
	cat, err := LoadCatalogue(filepath.Join("..", "configs", "catalogue.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := LoadRules(filepath.Join("..", "configs", "rules.yaml"), cat)
	if err != nil {
		t.Fatal(err)
	}
	return cat, rs
}

func TestLaunchCatalogue(t *testing.T) {
	cat, _ := loadLaunch(t)
	for _, svc := range []string{"ccms", "crime-apply", "crime-form", "civil-apply", "manage-users"} {
		if _, ok := cat.Service(svc); !ok {
			t.Errorf("service %s missing", svc)
		}
	}
	if n := len(cat.Roles()); n != 17 {
		t.Errorf("launch catalogue has %d roles, DOMAIN.md lists 17", n)
	}
	tests := []struct {
		role  string
		admin bool
		types []directory.FirmType
	}{
		{"ccms/firm-administrator", true, []directory.FirmType{directory.FirmLegalServicesProvider}},
		{"ccms/chambers-administrator", true, []directory.FirmType{directory.FirmChambers}},
		{"ccms/advocate-administrator", true, []directory.FirmType{directory.FirmAdvocate}},
		{"manage-users/firm-user-manager", true, nil},
		{"ccms/case-management", false, []directory.FirmType{directory.FirmLegalServicesProvider}},
		{"crime-apply/access", false, nil},
	}
	for _, tt := range tests {
		r, ok := cat.Role(tt.role)
		if !ok {
			t.Errorf("%s missing", tt.role)
			continue
		}
		if r.Admin != tt.admin || !slices.Equal(r.FirmTypes, tt.types) {
			t.Errorf("%s: admin=%v types=%v, want %v %v", tt.role, r.Admin, r.FirmTypes, tt.admin, tt.types)
		}
		if r.ServiceSlug() == "ccms" && r.CCMSCode == "" {
			t.Errorf("%s: no CCMS responsibility code", tt.role)
		}
	}
	for _, s := range []string{"crime-apply", "crime-form", "civil-apply"} {
		if svc, _ := cat.Service(s); !svc.AutoGrant {
			t.Errorf("%s: sole role should be granted automatically", s)
		}
	}
}

func TestCatalogueValidationReportsEveryProblem(t *testing.T) {
	doc := `
services:
  - slug: svc
    autoGrant: true
    roles:
      - slug: a
        implies: [b]
        firmTypes: [LAW_FIRM]
      - slug: b
        implies: [c]
      - slug: c
        implies: [a]
      - slug: d
        conflicts: [nope]
        requires: [a]
        band: gold
      - slug: e
        special: true
  - slug: Bad Slug
    roles: []
`
	_, err := ParseCatalogue([]byte(doc))
	var pe *ProblemsError
	if !errors.As(err, &pe) {
		t.Fatalf("want ProblemsError, got %v", err)
	}
	want := []string{
		"autoGrant needs exactly one role",
		`unknown firm type "LAW_FIRM"`,
		"implies cycle: svc/a -> svc/b -> svc/c -> svc/a",
		`conflicts: unknown role "nope"`,
		"requires is only for special roles",
		`unknown band "gold"`,
		"special role must list the primary roles",
		`slug "Bad Slug"`,
		"service Bad Slug: no roles",
	}
	all := strings.Join(pe.Problems, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("problems lack %q:\n%s", w, all)
		}
	}
	if strings.Count(all, "implies cycle") != 1 {
		t.Errorf("cycle reported more than once:\n%s", all)
	}
}

func TestCatalogueImpliedRoleMustBeEligibleAndNotConflict(t *testing.T) {
	doc := `
services:
  - slug: s
    roles:
      - slug: p
        firmTypes: [LEGAL_SERVICES_PROVIDER, CHAMBERS]
        implies: [q]
        conflicts: [q]
      - slug: q
        firmTypes: [LEGAL_SERVICES_PROVIDER]
      - slug: adm
        admin: true
      - slug: x
        implies: [adm]
`
	_, err := ParseCatalogue([]byte(doc))
	if err == nil {
		t.Fatal("want problems")
	}
	for _, w := range []string{"implies s/q, which is not allowed for firm type CHAMBERS", "implies s/q, which it conflicts with", "implies admin role s/adm"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in %v", w, err)
		}
	}
}

func TestNeighbourModels(t *testing.T) {
	b, err := os.ReadFile("testdata/neighbours.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cat, err := ParseCatalogue(b)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		service string
		roles   []string
		want    []string
	}{
		{"child inherits parent permissions transitively", "casework", []string{"casework/supervisor"},
			[]string{"case.close", "case.create", "case.edit", "case.view", "time.record"}},
		{"unrestricted band excludes nothing", "accounts", []string{"accounts/accountant"},
			[]string{"invoices.finalise", "ledgers.create", "receipts.create", "reports.pnl", "transactions.post"}},
		{"standard band exclusions", "accounts", []string{"accounts/cashier"},
			[]string{"invoices.finalise", "receipts.create"}},
		{"exclusion at standard cascades to basic", "accounts", []string{"accounts/paralegal"},
			[]string{"time.record"}},
		{"special role adds without replacing, overriding an exclusion", "accounts", []string{"accounts/cashier", "accounts/approve-all-invoices"},
			[]string{"invoices.approve", "invoices.finalise", "receipts.create", "transactions.post"}},
		{"additive right", "lex", []string{"lex/user", "lex/right-export"}, []string{"matters.export", "matters.view"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := cat.EffectivePermissions(tt.service, tt.roles)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	aud, _ := cat.Role("casework/auditor")
	sup, _ := cat.Role("casework/supervisor")
	if !slices.Contains(sup.ConflictingRoles(), aud) {
		t.Error("conflicts are not symmetric")
	}
}
