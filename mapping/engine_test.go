package mapping

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/directory"
)

var update = flag.Bool("update", false, "rewrite golden files")

// fixture builds facts around firms 3856 (provider, offices 0Q731M, 1A001L,
// inactive 2B002X), 4000 (chambers), 5000 (advocate), 9999 (disabled provider).
func fixture() Facts {
	firms := map[string]directory.Firm{
		"3856": {Number: "3856", Name: "Smith & Co", Type: directory.FirmLegalServicesProvider, Enabled: true},
		"4000": {Number: "4000", Name: "Temple Chambers", Type: directory.FirmChambers, Enabled: true},
		"5000": {Number: "5000", Name: "A Advocate", Type: directory.FirmAdvocate, Enabled: true, ParentNumber: "4000"},
		"9999": {Number: "9999", Name: "Gone LLP", Type: directory.FirmLegalServicesProvider, Enabled: false},
	}
	offices := map[string][]directory.Office{
		"3856": {
			{Code: "0Q731M", FirmNumber: "3856", Active: true},
			{Code: "1A001L", FirmNumber: "3856", Active: true},
			{Code: "2B002X", FirmNumber: "3856", Active: false},
		},
		"4000": {{Code: "4C000A", FirmNumber: "4000", Active: true}},
		"9999": {{Code: "9Z999Z", FirmNumber: "9999", Active: true}},
	}
	return Facts{
		User: directory.User{ID: "u1", UserName: "alice@smith.example", Active: true, UserType: "Employee", FirmNumber: "3856",
			Attrs: json.RawMessage(`{"officeCodes":"0Q731M, 2B002X,4C000A","department":"Crime","enterprise":{"costCenter":"CC1"}}`)},
		Links:       []directory.SourceLink{{UserID: "u1", Source: "scim:entra", Key: "x1"}},
		Memberships: []directory.FirmMembership{{UserID: "u1", FirmNumber: "3856", Source: "scim:entra"}},
		Firms:       firms,
		Offices:     offices,
	}
}

func group(name string, via ...string) GroupFact {
	return GroupFact{Group: directory.Group{ID: "g-" + name, Source: "scim:entra", DisplayName: name}, Via: via}
}

func keys(r Result) []string {
	var out []string
	for _, d := range r.Grants {
		g := d.Grant
		s := g.FirmNumber + ":" + g.Service + "/" + g.Role
		if g.AllOffices {
			s += "[all]"
		} else {
			s += "[" + strings.Join(g.Offices, ",") + "]"
		}
		out = append(out, s)
	}
	return out
}

func TestEvaluateLaunchRules(t *testing.T) {
	cat, rs := loadLaunch(t)
	e := NewEngine(cat, rs)
	now := time.Now()
	tests := []struct {
		name   string
		mod    func(f *Facts)
		want   []string
		status Status
		denied string
	}{
		{"no groups: nothing", func(f *Facts) {}, nil, StatusIncomplete, ""},
		{"pattern group grants auto services", func(f *Facts) { f.Groups = []GroupFact{group("LAA Crime")} },
			[]string{"3856:crime-apply/access[all]", "3856:crime-form/submit-access[all]"}, StatusComplete, ""},
		{"offices from attribute keep only active offices of the firm", func(f *Facts) { f.Groups = []GroupFact{group("LAA CCMS Case Workers")} },
			[]string{"3856:ccms/case-management[0Q731M]"}, StatusComplete, ""},
		{"implied role with same scope", func(f *Facts) { f.Groups = []GroupFact{group("LAA CCMS Supervisors")} },
			[]string{"3856:ccms/case-management[all]", "3856:ccms/case-management-supervisor[all]"}, StatusComplete, ""},
		{"two rules merge scope", func(f *Facts) {
			f.Groups = []GroupFact{group("LAA CCMS Case Workers"), group("LAA CCMS Supervisors")}
		}, []string{"3856:ccms/case-management[all]", "3856:ccms/case-management-supervisor[all]"}, StatusComplete, ""},
		{"nested group counts", func(f *Facts) { f.Groups = []GroupFact{group("LAA CCMS Office Managers", "Team A")} },
			[]string{"3856:ccms/cross-office-access[all]", "3856:ccms/office-manager[all]"}, StatusComplete, ""},
		{"firm type ineligible: chambers user in provider group", func(f *Facts) {
			f.User.FirmNumber = "4000"
			f.Memberships = nil
			f.Groups = []GroupFact{group("LAA CCMS Supervisors"), group("LAA Counsel Billing")}
		}, []string{"4000:ccms/counsel-bill-preparation[all]", "4000:ccms/counsel-bill-submission[all]"}, StatusComplete, ""},
		{"legacy offices scope", func(f *Facts) {
			f.Groups = []GroupFact{group("LAA CCMS Billing")}
			f.LegacyLogins = []directory.LegacyLogin{{Login: "ALICE1", FirmNumber: "3856", OfficeCodes: []string{"1A001L", "9Z999Z"}, UserID: "u1"}}
		}, []string{"3856:ccms/bill-preparation[1A001L]"}, StatusComplete, ""},
		{"legacy match needs a login in the firm", func(f *Facts) {
			f.Groups = []GroupFact{group("LAA CCMS Billing")}
			f.LegacyLogins = []directory.LegacyLogin{{Login: "ALICE1", FirmNumber: "4000", OfficeCodes: []string{"4C000A"}, UserID: "u1"}}
		}, nil, StatusIncomplete, ""},
		{"needs offices and none in scope: refused", func(f *Facts) {
			f.Groups = []GroupFact{group("LAA CCMS Case Workers")}
			f.User.Attrs = json.RawMessage(`{"officeCodes":"4C000A"}`)
		}, nil, StatusIncomplete, "needs offices"},
		{"admin rule by DN", func(f *Facts) {
			f.Groups = []GroupFact{{Group: directory.Group{DisplayName: "admins", DN: "CN=laa-firm-admins, OU=Groups,DC=laa,DC=example"}}}
		}, []string{"3856:ccms/firm-administrator[all]", "3856:manage-users/firm-user-manager[all]"}, StatusIncomplete, ""},
		{"inactive user gets nothing", func(f *Facts) { f.Groups = []GroupFact{group("LAA Crime")}; f.User.Active = false }, nil, StatusIncomplete, ""},
		{"deleted user gets nothing", func(f *Facts) { f.Groups = []GroupFact{group("LAA Crime")}; f.User.DeletedAt = &now }, nil, StatusIncomplete, ""},
		{"only source gone gets nothing", func(f *Facts) { f.Groups = []GroupFact{group("LAA Crime")}; f.Links[0].GoneAt = &now }, nil, StatusIncomplete, ""},
		{"one of two sources gone still evaluated", func(f *Facts) {
			f.Groups = []GroupFact{group("LAA Crime")}
			f.Links[0].GoneAt = &now
			f.Links = append(f.Links, directory.SourceLink{Source: "ldap:corp", Key: "e1"})
		}, []string{"3856:crime-apply/access[all]", "3856:crime-form/submit-access[all]"}, StatusComplete, ""},
		{"disabled firm grants nothing", func(f *Facts) {
			f.Groups = []GroupFact{group("LAA Crime")}
			f.User.FirmNumber = "9999"
			f.Memberships = nil
		}, nil, StatusIncomplete, ""},
		{"deleted group does not count", func(f *Facts) {
			g := group("LAA Crime")
			g.Group.DeletedAt = &now
			f.Groups = []GroupFact{g}
		}, nil, StatusIncomplete, ""},
		{"multi-firm user gets grants per firm", func(f *Facts) {
			f.Groups = []GroupFact{group("LAA Crime")}
			f.Memberships = append(f.Memberships, directory.FirmMembership{UserID: "u1", FirmNumber: "5000"})
		}, []string{"3856:crime-apply/access[all]", "3856:crime-form/submit-access[all]", "5000:crime-apply/access[all]", "5000:crime-form/submit-access[all]"}, StatusComplete, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fixture()
			tt.mod(&f)
			r := e.Evaluate(&f)
			if got := keys(r); !slices.Equal(got, tt.want) {
				t.Errorf("grants %v, want %v (denied %+v)", got, tt.want, r.Denied)
			}
			if r.Status != tt.status {
				t.Errorf("status %s, want %s", r.Status, tt.status)
			}
			if tt.denied != "" && (len(r.Denied) == 0 || !strings.Contains(r.Denied[0].Reason, tt.denied)) {
				t.Errorf("denied %+v, want %q", r.Denied, tt.denied)
			}
			for _, d := range r.Grants {
				for _, p := range d.Grant.Provenance {
					if p.Kind != directory.ProvRule || p.Ref == "" {
						t.Errorf("desired grant provenance %+v", p)
					}
				}
				if len(d.Reasons) == 0 {
					t.Error("desired grant without reason")
				}
			}
		})
	}
}

const customRules = `
rules:
  - name: sneaky-admin
    match: {groups: [{name: Admins}]}
    grants: [{role: ccms/firm-administrator}]
`

func TestRulesValidation(t *testing.T) {
	cat, _ := loadLaunch(t)
	doc := `
rules:
  - name: r1
    match:
      groups: [{name: A, dn: "cn=a"}, {pattern: "[x"}]
      firmTypes: [CHAMBERS, NOPE]
      legacy: {offices: [bad]}
    grants:
      - role: ccms/firm-administrator
      - role: ccms/case-management
        offices: {all: true, list: [0Q731M]}
      - role: case-management
      - role: ccms/nope
      - service: ccms
      - service: crime-apply
        offices: {list: [toolong1]}
  - name: r1
    grants: []
`
	_, err := ParseRules([]byte(doc), cat)
	if err == nil {
		t.Fatal("want problems")
	}
	for _, w := range []string{
		"set exactly one of name, dn, pattern",
		`bad pattern "[x"`,
		`unknown firm type "NOPE"`,
		`"bad" is not an office code`,
		"ccms/firm-administrator is an admin role; the rule must say admin: true",
		"ccms/firm-administrator is not allowed for firm type CHAMBERS",
		"offices: set exactly one of all, attribute, list, legacy",
		`role "case-management" must be written service/role`,
		`unknown role "ccms/nope"`,
		`service "ccms" has no automatic role`,
		`"toolong1" is not an office code`,
		`rule "r1": duplicate name`,
		`rule "r1": grants nothing`,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in\n%v", w, err)
		}
	}
	if _, err := ParseRules([]byte(customRules), cat); err == nil || !strings.Contains(err.Error(), "admin: true") {
		t.Errorf("admin role without admin: true accepted: %v", err)
	}
}

// The engine refuses admin roles without admin: true even for rules that
// were never validated (defence in depth).
func TestEngineRefusesUnflaggedAdmin(t *testing.T) {
	cat, _ := loadLaunch(t)
	rs := &RuleSet{Rules: []*Rule{{Name: "sneaky", Match: Match{Groups: []GroupMatch{{Name: "Admins"}}},
		Grants: []Grant{{Role: "ccms/firm-administrator"}}}}}
	f := fixture()
	f.Groups = []GroupFact{group("Admins")}
	r := NewEngine(cat, rs).Evaluate(&f)
	if len(r.Grants) != 0 || len(r.Denied) != 1 || !strings.Contains(r.Denied[0].Reason, "admin") {
		t.Fatalf("grants %v denied %+v", keys(r), r.Denied)
	}
}

func neighbours(t *testing.T) *Catalogue {
	b, err := os.ReadFile("testdata/neighbours.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cat, err := ParseCatalogue(b)
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

func TestConflictsAndSpecialRoles(t *testing.T) {
	cat := neighbours(t)
	rs, err := ParseRules([]byte(`
rules:
  - name: supervisors
    match: {groups: [{name: Sup}]}
    grants: [{role: casework/supervisor}]
  - name: auditors
    match: {groups: [{name: Aud}]}
    grants: [{role: casework/auditor}]
  - name: approvers
    match: {groups: [{name: Appr}]}
    grants: [{role: accounts/approve-all-invoices}]
  - name: cashiers
    match: {attributes: {department: [fin*]}}
    grants: [{role: accounts/cashier}]
`), cat)
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(cat, rs)
	tests := []struct {
		name      string
		mod       func(f *Facts)
		want      []string
		conflicts int
		denied    string
	}{
		{"earlier rule wins a conflict", func(f *Facts) { f.Groups = []GroupFact{group("Sup"), group("Aud")} },
			[]string{"3856:casework/advocate[all]", "3856:casework/intake[all]", "3856:casework/supervisor[all]"}, 1, ""},
		{"conflict with a manual grant", func(f *Facts) {
			f.Groups = []GroupFact{group("Aud")}
			f.Grants = []directory.Grant{{UserID: "u1", FirmNumber: "3856", Service: "casework", Role: "supervisor", AllOffices: true,
				Provenance: []directory.Provenance{{Kind: directory.ProvManual, Ref: "admin:bob"}}}}
		}, nil, 1, ""},
		{"special role without its primary role is refused", func(f *Facts) { f.Groups = []GroupFact{group("Appr")} },
			nil, 0, "special role needs one of accounts/cashier, accounts/accountant"},
		{"special role with primary role from an attribute glob", func(f *Facts) {
			f.Groups = []GroupFact{group("Appr")}
			f.User.Attrs = json.RawMessage(`{"department":"Finance"}`)
		}, []string{"3856:accounts/approve-all-invoices[all]", "3856:accounts/cashier[all]"}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fixture()
			f.User.Attrs = nil
			tt.mod(&f)
			r := e.Evaluate(&f)
			if got := keys(r); !slices.Equal(got, tt.want) {
				t.Errorf("grants %v, want %v", got, tt.want)
			}
			if len(r.Conflicts) != tt.conflicts {
				t.Errorf("conflicts %+v, want %d", r.Conflicts, tt.conflicts)
			}
			if tt.denied != "" && (len(r.Denied) == 0 || !strings.Contains(r.Denied[0].Reason, tt.denied)) {
				t.Errorf("denied %+v, want %q", r.Denied, tt.denied)
			}
		})
	}
}

func TestMatchCriteria(t *testing.T) {
	cat, _ := loadLaunch(t)
	rs, err := ParseRules([]byte(`
rules:
  - name: r
    match:
      userTypes: [employee]
      attributes: {enterprise.costCenter: [CC1, CC2], department: [crime]}
      groups: [{name: LAA Crime, source: "scim:entra"}]
      legacy: {offices: [0Q731M]}
    grants: [{service: crime-apply}]
`), cat)
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(cat, rs)
	base := func() Facts {
		f := fixture()
		f.Groups = []GroupFact{group("LAA Crime")}
		f.LegacyLogins = []directory.LegacyLogin{{Login: "L1", FirmNumber: "3856", OfficeCodes: []string{"0Q731M"}}}
		return f
	}
	tests := []struct {
		name string
		mod  func(f *Facts)
		ok   bool
	}{
		{"all criteria hold", func(f *Facts) {}, true},
		{"user type differs", func(f *Facts) { f.User.UserType = "Contractor" }, false},
		{"nested attribute differs", func(f *Facts) {
			f.User.Attrs = json.RawMessage(`{"department":"crime","enterprise":{"costCenter":"CC9"}}`)
		}, false},
		{"attribute missing", func(f *Facts) { f.User.Attrs = nil }, false},
		{"group from another source", func(f *Facts) { f.Groups[0].Group.Source = "ldap:corp" }, false},
		{"legacy login without that office", func(f *Facts) { f.LegacyLogins[0].OfficeCodes = []string{"1A001L"} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := base()
			tt.mod(&f)
			if got := len(e.Evaluate(&f).Grants) > 0; got != tt.ok {
				t.Errorf("matched %v, want %v", got, tt.ok)
			}
		})
	}
}

func TestStatus(t *testing.T) {
	cat, _ := loadLaunch(t)
	e := NewEngine(cat, &RuleSet{})
	g := func(svc, role string, all bool, offices ...string) directory.Grant {
		return directory.Grant{Service: svc, Role: role, AllOffices: all, Offices: offices}
	}
	tests := []struct {
		name   string
		grants []directory.Grant
		want   Status
	}{
		{"nothing", nil, StatusIncomplete},
		{"admin role only", []directory.Grant{g("manage-users", "firm-user-manager", true)}, StatusIncomplete},
		{"service role", []directory.Grant{g("crime-apply", "access", false)}, StatusComplete},
		{"role needing offices without one", []directory.Grant{g("crime-apply", "access", true), g("ccms", "case-management", false)}, StatusIncomplete},
		{"role with an office", []directory.Grant{g("ccms", "case-management", false, "0Q731M")}, StatusComplete},
	}
	for _, tt := range tests {
		if got := e.StatusOf(tt.grants); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestExplainGolden(t *testing.T) {
	cat, rs := loadLaunch(t)
	e := NewEngine(cat, rs)
	cases := map[string]func(f *Facts){
		"provider_user": func(f *Facts) {
			f.Groups = []GroupFact{group("LAA CCMS Case Workers"), group("LAA Crime", "Crime Team")}
			f.Grants = []directory.Grant{
				{UserID: "u1", FirmNumber: "3856", Service: "ccms", Role: "case-management", Offices: []string{"0Q731M"},
					Provenance: []directory.Provenance{{Kind: directory.ProvRule, Ref: "ccms-case-workers"}, {Kind: directory.ProvManual, Ref: "admin:bob"}}},
				{UserID: "u1", FirmNumber: "3856", Service: "ccms", Role: "bill-supervisor", Offices: []string{"1A001L"},
					Provenance: []directory.Provenance{{Kind: directory.ProvRule, Ref: "old-rule"}}},
				{UserID: "u1", FirmNumber: "7777", Service: "crime-form", Role: "submit-access", AllOffices: true,
					Provenance: []directory.Provenance{{Kind: directory.ProvManual, Ref: "admin:bob"}}},
			}
		},
		"inactive_user": func(f *Facts) { f.User.Active = false; f.Groups = []GroupFact{group("LAA Crime")} },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			f := fixture()
			mod(&f)
			x := e.Explain(&f)
			var buf bytes.Buffer
			if err := x.WriteText(&buf); err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", "explain_"+name+".txt"), buf.Bytes())
			j, _ := json.MarshalIndent(x, "", "  ")
			golden(t, filepath.Join("testdata", "explain_"+name+".json"), append(j, '\n'))
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestRunFixtureGolden(t *testing.T) {
	cat, rs := loadLaunch(t)
	fx, err := LoadFixture(filepath.Join("testdata", "fixture.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := NewEngine(cat, rs).RunFixture(fx, &buf); err != nil {
		t.Fatal(err)
	}
	golden(t, filepath.Join("testdata", "fixture.golden"), buf.Bytes())
}

func TestNeedsOnlyGroupsOrLegacy(t *testing.T) {
	cat, rs := loadLaunch(t)
	if !NewEngine(cat, rs).NeedsOnlyGroupsOrLegacy() {
		t.Error("launch rules all need groups")
	}
	all := &RuleSet{Rules: append(slices.Clone(rs.Rules), &Rule{Name: "everyone", Grants: []Grant{{Service: "crime-apply"}}})}
	if NewEngine(cat, all).NeedsOnlyGroupsOrLegacy() {
		t.Error("a rule matching every user needs more than groups")
	}
}

// TestListedOfficeScope: a rule's listed offices are kept only where they are
// active offices of the user's firm, and the reason says which were dropped.
func TestListedOfficeScope(t *testing.T) {
	cat, _ := loadLaunch(t)
	rs, err := ParseRules([]byte(`
rules:
  - name: listed
    match: {groups: [{name: Billing}]}
    grants: [{role: ccms/bill-preparation, offices: {list: [1A001L, 0Q731M, 2B002X, 4C000A]}}]
  - name: listed-elsewhere
    match: {groups: [{name: Elsewhere}]}
    grants: [{role: ccms/case-management, offices: {list: [4C000A]}}]
`), cat)
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(cat, rs)
	f := fixture()
	f.Groups = []GroupFact{group("Billing"), group("Elsewhere")}
	r := e.Evaluate(&f)
	if got := keys(r); !slices.Equal(got, []string{"3856:ccms/bill-preparation[0Q731M,1A001L]"}) {
		t.Fatalf("grants %v", got)
	}
	if why := r.Grants[0].Reasons[0]; !strings.Contains(why, "dropped 2B002X,4C000A: not an active office of firm 3856") {
		t.Errorf("reason %q does not name the dropped offices", why)
	}
	if len(r.Denied) != 1 || r.Denied[0].Role != "ccms/case-management" || !strings.Contains(r.Denied[0].Reason, "needs offices") {
		t.Errorf("denied %+v: a role needing offices with none of the firm's in scope", r.Denied)
	}
}

// TestExplainShowsHeldScope: a held role is explained with the offices the
// user actually holds, and, when rules will change them, with the scope
// they will become; never with the rules' scope as if it were held.
func TestExplainShowsHeldScope(t *testing.T) {
	cat, rs := loadLaunch(t)
	e := NewEngine(cat, rs)
	ruleProv := directory.Provenance{Kind: directory.ProvRule, Ref: "ccms-case-workers"}
	manual := directory.Provenance{Kind: directory.ProvManual, Ref: "admin:bob"}
	tests := []struct {
		name            string
		held            directory.Grant
		scope, changeTo string
	}{
		{"rule grant held wider than the rules now give",
			directory.Grant{AllOffices: true, Provenance: []directory.Provenance{ruleProv}}, "all offices", "offices 0Q731M"},
		{"rule grant held as the rules give", directory.Grant{Offices: []string{"0Q731M"}, Provenance: []directory.Provenance{ruleProv}},
			"offices 0Q731M", ""},
		{"manual and rule grant keeps its wider scope",
			directory.Grant{Offices: []string{"0Q731M", "1A001L"}, Provenance: []directory.Provenance{manual, ruleProv}}, "offices 0Q731M,1A001L", ""},
		{"manual grant the rules widen", directory.Grant{Offices: []string{"1A001L"}, Provenance: []directory.Provenance{manual}},
			"offices 1A001L", "offices 0Q731M,1A001L"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fixture()
			f.Groups = []GroupFact{group("LAA CCMS Case Workers")}
			g := tt.held
			g.UserID, g.FirmNumber, g.Service, g.Role = "u1", "3856", "ccms", "case-management"
			f.Grants = []directory.Grant{g}
			x := e.Explain(&f)
			var rx *RoleExplanation
			for i := range x.Firms[0].Roles {
				if x.Firms[0].Roles[i].Role == "ccms/case-management" {
					rx = &x.Firms[0].Roles[i]
				}
			}
			if rx == nil || !rx.Held || !rx.Desired {
				t.Fatalf("case-management: %+v; want held and desired", rx)
			}
			if rx.Scope != tt.scope || rx.ScopeChange != tt.changeTo {
				t.Errorf("scope %q, change to %q; want %q, %q", rx.Scope, rx.ScopeChange, tt.scope, tt.changeTo)
			}
		})
	}
}

// TestExplainDeprovisionedUser: an inactive or deleted user loses every
// grant at the next reconcile, manual ones too; the explanation says so
// instead of calling a manual grant "held, not from rules". A user whose
// sources are all gone keeps manual grants (only rule grants go).
func TestExplainDeprovisionedUser(t *testing.T) {
	cat, rs := loadLaunch(t)
	e := NewEngine(cat, rs)
	now := time.Now()
	tests := []struct {
		name  string
		mod   func(f *Facts)
		state string
	}{
		{"inactive", func(f *Facts) { f.User.Active = false }, "! ccms/case-management: held, to be revoked [offices 0Q731M]"},
		{"deleted", func(f *Facts) { f.User.DeletedAt = &now }, "! ccms/case-management: held, to be revoked [offices 0Q731M]"},
		{"every source gone", func(f *Facts) {
			f.Links = []directory.SourceLink{{UserID: "u1", Source: "ldap:corp", Key: "k", GoneAt: &now}}
		}, "! ccms/case-management: held, not from rules [offices 0Q731M]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fixture()
			tt.mod(&f)
			f.Grants = []directory.Grant{{UserID: "u1", FirmNumber: "3856", Service: "ccms", Role: "case-management", Offices: []string{"0Q731M"},
				Provenance: []directory.Provenance{{Kind: directory.ProvManual, Ref: "admin:bob"}}}}
			var buf bytes.Buffer
			if err := e.Explain(&f).WriteText(&buf); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(buf.String(), tt.state+"\n") {
				t.Errorf("explain:\n%s\nwant the line %q", buf.String(), tt.state)
			}
		})
	}
}
