package reconcile

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/mapping"
)

var update = flag.Bool("update", false, "rewrite golden files")

func rule(name string) directory.Provenance {
	return directory.Provenance{Kind: directory.ProvRule, Ref: name, Detail: "member of group \"G\""}
}

var manual = directory.Provenance{Kind: directory.ProvManual, Ref: "admin:bob"}

func grant(role string, all bool, offices []string, prov ...directory.Provenance) directory.Grant {
	return directory.Grant{UserID: "u1", FirmNumber: "3856", Service: "ccms", Role: role, AllOffices: all, Offices: offices, Provenance: prov}
}

func desired(gs ...directory.Grant) mapping.Result {
	var r mapping.Result
	for _, g := range gs {
		r.Grants = append(r.Grants, mapping.Desired{Grant: g, Reasons: []string{"rule " + g.Provenance[0].Ref + ": member of group \"G\""}})
	}
	return r
}

func TestDiffProvenance(t *testing.T) {
	user := directory.User{ID: "u1", UserName: "alice", Active: true}
	now := time.Now()
	tests := []struct {
		name   string
		user   func(u *directory.User)
		want   mapping.Result
		actual []directory.Grant
		plan   []Action
		after  []*Scope
	}{
		{"new rule grant", nil, desired(grant("case-management", true, nil, rule("r1"))), nil,
			[]Action{ActGrant}, []*Scope{{AllOffices: true, Provenance: []directory.Provenance{rule("r1")}}}},
		{"already as desired: nothing", nil, desired(grant("case-management", true, nil, rule("r1"))),
			[]directory.Grant{grant("case-management", true, nil, rule("r1"))}, nil, nil},
		{"rule grant no longer desired: revoke", nil, mapping.Result{},
			[]directory.Grant{grant("case-management", true, nil, rule("r1"))}, []Action{ActRevoke}, []*Scope{nil}},
		{"manual grant never removed by rules", nil, mapping.Result{},
			[]directory.Grant{grant("case-management", false, []string{"0Q731M"}, manual)}, nil, nil},
		{"manual grant a rule also produces keeps both provenances and widens scope", nil,
			desired(grant("case-management", false, []string{"1A001L"}, rule("r1"))),
			[]directory.Grant{grant("case-management", false, []string{"0Q731M"}, manual)},
			[]Action{ActUpdate}, []*Scope{{Offices: []string{"0Q731M", "1A001L"}, Provenance: []directory.Provenance{manual, rule("r1")}}}},
		{"rule stops: manual+rule grant keeps manual provenance and scope", nil, mapping.Result{},
			[]directory.Grant{grant("case-management", false, []string{"0Q731M"}, manual, rule("r1"))},
			[]Action{ActUpdate}, []*Scope{{Offices: []string{"0Q731M"}, Provenance: []directory.Provenance{manual}}}},
		{"rule grant offices change", nil, desired(grant("case-management", false, []string{"1A001L"}, rule("r1"))),
			[]directory.Grant{grant("case-management", true, nil, rule("r1"))},
			[]Action{ActUpdate}, []*Scope{{Offices: []string{"1A001L"}, Provenance: []directory.Provenance{rule("r1")}}}},
		{"rule name changes: provenance update", nil, desired(grant("case-management", true, nil, rule("r2"))),
			[]directory.Grant{grant("case-management", true, nil, rule("r1"))},
			[]Action{ActUpdate}, []*Scope{{AllOffices: true, Provenance: []directory.Provenance{rule("r2")}}}},
		{"deprovisioned user loses manual grants too", func(u *directory.User) { u.Active = false }, mapping.Result{},
			[]directory.Grant{grant("case-management", false, []string{"0Q731M"}, manual), grant("bill-preparation", true, nil, rule("r1"))},
			[]Action{ActRevoke, ActRevoke}, []*Scope{nil, nil}},
		{"deleted user loses every grant", func(u *directory.User) { u.DeletedAt = &now }, mapping.Result{},
			[]directory.Grant{grant("case-management", false, []string{"0Q731M"}, manual)}, []Action{ActRevoke}, []*Scope{nil}},
		{"source-gone user keeps manual grants", nil, mapping.Result{Ineligible: "every source of the user is gone"},
			[]directory.Grant{grant("case-management", false, []string{"0Q731M"}, manual), grant("bill-preparation", true, nil, rule("r1"))},
			[]Action{ActRevoke}, []*Scope{nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := user
			if tt.user != nil {
				tt.user(&u)
			}
			got := diffUser(u, tt.want, tt.actual)
			if len(got) != len(tt.plan) {
				t.Fatalf("plan %+v, want actions %v", got, tt.plan)
			}
			for i, c := range got {
				if c.Action != tt.plan[i] {
					t.Errorf("change %d: %s, want %s", i, c.Action, tt.plan[i])
				}
				if c.Reason == "" {
					t.Errorf("change %d has no reason", i)
				}
				if (c.After == nil) != (tt.after[i] == nil) || c.After != nil && !c.After.equal(tt.after[i]) {
					a, _ := json.Marshal(c.After)
					w, _ := json.Marshal(tt.after[i])
					t.Errorf("change %d after %s, want %s", i, a, w)
				}
			}
		})
	}
}

func TestPlanHashAndGolden(t *testing.T) {
	u := directory.User{ID: "u1", UserName: "alice", Active: true}
	p := &Plan{Changes: diffUser(u,
		desired(grant("case-management", true, nil, rule("r1")), grant("office-manager", false, []string{"1A001L"}, rule("r2"))),
		[]directory.Grant{grant("office-manager", true, nil, rule("r2")), grant("bill-preparation", true, nil, rule("old")),
			grant("bill-supervisor", false, []string{"0Q731M"}, manual, rule("old"))})}
	p.sort()
	h := p.Hash()
	p2 := *p
	p2.Changes = append([]Change(nil), p.Changes...)
	p2.Changes[0].Reason += "!"
	if p2.Hash() == h {
		t.Error("hash ignores a change's content")
	}
	var text bytes.Buffer
	if err := p.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	goldenFile(t, filepath.Join("testdata", "plan.txt"), text.Bytes())
	j, _ := json.MarshalIndent(p, "", "  ")
	goldenFile(t, filepath.Join("testdata", "plan.json"), append(j, '\n'))
	var back Plan
	if err := json.Unmarshal(j, &back); err != nil || back.Hash() != h {
		t.Errorf("plan does not round-trip through JSON with the same hash: %v", err)
	}
}

func goldenFile(t *testing.T, path string, got []byte) {
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

func TestGuardLimit(t *testing.T) {
	g := Guard{MinRevokes: 50, Percent: 5}
	for _, tt := range []struct{ total, want int }{{0, 50}, {999, 50}, {1000, 50}, {1020, 51}, {100000, 5000}} {
		if got := g.Limit(tt.total); got != tt.want {
			t.Errorf("Limit(%d) = %d, want %d", tt.total, got, tt.want)
		}
	}
}
