package cwasync

import (
	"slices"
	"strings"
	"testing"

	"github.com/dirsyncd/dirsyncd/directory"
)

func row(firm, name, typ, parent, code string) OfficeRow {
	return OfficeRow{FirmNumber: flexString(firm), FirmName: name, FirmType: typ, ParentFirmNumber: flexString(parent), OfficeAccountNumber: code}
}

const (
	lsp = "Legal Services Provider"
	ch  = "Chambers"
	adv = "Advocate"
)

func hasItem(s *Snapshot, action, typ, id, reasonPart string) bool {
	for _, it := range s.Items {
		if it.Action == action && it.ObjectType == typ && it.ObjectID == id && strings.Contains(it.Reason, reasonPart) {
			return true
		}
	}
	return false
}

func TestApplyRules(t *testing.T) {
	type item struct{ action, typ, id, reason string }
	tests := []struct {
		name        string
		rows        []OfficeRow
		wantFirms   map[string]directory.Firm // compared on Name, Type, ParentNumber
		wantOffices map[string]string         // code -> firm
		wantItems   []item
	}{
		{
			name:        "firm types mapped",
			rows:        []OfficeRow{row("1", "A", lsp, "", "AAAAA1"), row("2", "B", ch, "", "BBBBB1"), row("3", "C", adv, "", "CCCCC1")},
			wantFirms:   map[string]directory.Firm{"1": {Name: "A", Type: directory.FirmLegalServicesProvider}, "2": {Name: "B", Type: directory.FirmChambers}, "3": {Name: "C", Type: directory.FirmAdvocate}},
			wantOffices: map[string]string{"AAAAA1": "1", "BBBBB1": "2", "CCCCC1": "3"},
		},
		{
			name:        "office without a firm is dropped",
			rows:        []OfficeRow{row("", "", "", "", "AAAAA1"), row("2", "B", ch, "", "BBBBB1")},
			wantFirms:   map[string]directory.Firm{"2": {Name: "B", Type: directory.FirmChambers}},
			wantOffices: map[string]string{"BBBBB1": "2"},
			wantItems:   []item{{ActionDropped, ObjOffice, "AAAAA1", "office without a firm"}},
		},
		{
			name:        "firm without offices is dropped",
			rows:        []OfficeRow{row("1", "A", lsp, "", ""), row("2", "B", ch, "", "BBBBB1")},
			wantFirms:   map[string]directory.Firm{"2": {Name: "B", Type: directory.FirmChambers}},
			wantOffices: map[string]string{"BBBBB1": "2"},
			wantItems:   []item{{ActionDropped, ObjFirm, "1", "firm without offices"}},
		},
		{
			name:        "firm whose only office is invalid is dropped too",
			rows:        []OfficeRow{row("1", "A", lsp, "", "BAD"), row("2", "B", ch, "", "BBBBB1")},
			wantFirms:   map[string]directory.Firm{"2": {Name: "B", Type: directory.FirmChambers}},
			wantOffices: map[string]string{"BBBBB1": "2"},
			wantItems:   []item{{ActionRejected, ObjOffice, "BAD", "invalid office code"}, {ActionDropped, ObjFirm, "1", "firm without offices"}},
		},
		{
			name: "office codes validated",
			rows: []OfficeRow{row("1", "A", lsp, "", "0q731m"), row("1", "A", lsp, "", "1A001"), row("1", "A", lsp, "", "1A001LX"),
				row("1", "A", lsp, "", "1A-01L"), row("1", "A", lsp, "", "1A 01L"), row("1", "A", lsp, "", "1A001L")},
			wantFirms:   map[string]directory.Firm{"1": {Name: "A", Type: directory.FirmLegalServicesProvider}},
			wantOffices: map[string]string{"0Q731M": "1", "1A001L": "1"},
			wantItems: []item{{ActionRejected, ObjOffice, "1A001", "want 6 letters or digits"}, {ActionRejected, ObjOffice, "1A001LX", "invalid"},
				{ActionRejected, ObjOffice, "1A-01L", "invalid"}, {ActionRejected, ObjOffice, "1A 01L", "invalid"}},
		},
		{
			name:        "unknown firm type rejected",
			rows:        []OfficeRow{row("1", "A", "Solicitor", "", "AAAAA1"), row("2", "B", ch, "", "BBBBB1")},
			wantFirms:   map[string]directory.Firm{"2": {Name: "B", Type: directory.FirmChambers}},
			wantOffices: map[string]string{"BBBBB1": "2"},
			wantItems:   []item{{ActionRejected, ObjFirm, "1", `unknown firm type "Solicitor"`}},
		},
		{
			name:        "office listed for two firms rejected",
			rows:        []OfficeRow{row("1", "A", lsp, "", "AAAAA1"), row("1", "A", lsp, "", "AAAAA2"), row("2", "B", ch, "", "AAAAA1"), row("2", "B", ch, "", "BBBBB1")},
			wantFirms:   map[string]directory.Firm{"1": {Name: "A", Type: directory.FirmLegalServicesProvider}, "2": {Name: "B", Type: directory.FirmChambers}},
			wantOffices: map[string]string{"AAAAA2": "1", "BBBBB1": "2"},
			wantItems:   []item{{ActionRejected, ObjOffice, "AAAAA1", "listed for firms 1 and 2"}},
		},
		{
			name: "advocate is never a parent",
			rows: []OfficeRow{row("1", "Adv", adv, "", "AAAAA1"), row("2", "Child", adv, "1", "BBBBB1")},
			wantFirms: map[string]directory.Firm{"1": {Name: "Adv", Type: directory.FirmAdvocate},
				"2": {Name: "Child", Type: directory.FirmAdvocate, ParentNumber: ""}},
			wantOffices: map[string]string{"AAAAA1": "1", "BBBBB1": "2"},
			wantItems:   []item{{ActionRepaired, ObjFirm, "2", "an advocate is never a parent"}},
		},
		{
			name: "advocate may be a child of chambers",
			rows: []OfficeRow{row("1", "Ch", ch, "", "AAAAA1"), row("2", "Adv", adv, "1", "BBBBB1")},
			wantFirms: map[string]directory.Firm{"1": {Name: "Ch", Type: directory.FirmChambers},
				"2": {Name: "Adv", Type: directory.FirmAdvocate, ParentNumber: "1"}},
			wantOffices: map[string]string{"AAAAA1": "1", "BBBBB1": "2"},
		},
		{
			name: "hierarchy one level deep",
			rows: []OfficeRow{row("1", "Top", lsp, "", "AAAAA1"), row("2", "Mid", lsp, "1", "BBBBB1"), row("3", "Low", lsp, "2", "CCCCC1")},
			wantFirms: map[string]directory.Firm{"1": {Name: "Top", Type: directory.FirmLegalServicesProvider},
				"2": {Name: "Mid", Type: directory.FirmLegalServicesProvider, ParentNumber: "1"},
				"3": {Name: "Low", Type: directory.FirmLegalServicesProvider}},
			wantOffices: map[string]string{"AAAAA1": "1", "BBBBB1": "2", "CCCCC1": "3"},
			wantItems:   []item{{ActionRepaired, ObjFirm, "3", "one level deep"}},
		},
		{
			name: "parent cycle and self parent and missing parent cleared",
			rows: []OfficeRow{row("1", "A", lsp, "2", "AAAAA1"), row("2", "B", lsp, "1", "BBBBB1"), row("3", "C", lsp, "3", "CCCCC1"), row("4", "D", lsp, "99", "DDDDD1")},
			wantFirms: map[string]directory.Firm{"1": {Name: "A", Type: directory.FirmLegalServicesProvider}, "2": {Name: "B", Type: directory.FirmLegalServicesProvider},
				"3": {Name: "C", Type: directory.FirmLegalServicesProvider}, "4": {Name: "D", Type: directory.FirmLegalServicesProvider}},
			wantOffices: map[string]string{"AAAAA1": "1", "BBBBB1": "2", "CCCCC1": "3", "DDDDD1": "4"},
			wantItems: []item{{ActionRepaired, ObjFirm, "1", "one level deep"}, {ActionRepaired, ObjFirm, "2", "one level deep"},
				{ActionRepaired, ObjFirm, "3", "its own parent"}, {ActionRepaired, ObjFirm, "4", "99 is not in the snapshot"}},
		},
		{
			name: "duplicate firm names get the firm number",
			rows: []OfficeRow{row("10", "Smith & Co", lsp, "", "AAAAA1"), row("20", "smith & co", lsp, "", "BBBBB1"), row("30", "Other", lsp, "", "CCCCC1")},
			wantFirms: map[string]directory.Firm{"10": {Name: "Smith & Co (10)", Type: directory.FirmLegalServicesProvider},
				"20": {Name: "smith & co (20)", Type: directory.FirmLegalServicesProvider}, "30": {Name: "Other", Type: directory.FirmLegalServicesProvider}},
			wantOffices: map[string]string{"AAAAA1": "10", "BBBBB1": "20", "CCCCC1": "30"},
			wantItems:   []item{{ActionRepaired, ObjFirm, "10", "shared by firms 10, 20"}, {ActionRepaired, ObjFirm, "20", "firm number appended"}},
		},
		{
			name:        "conflicting firm rows keep the first",
			rows:        []OfficeRow{row("1", "A", lsp, "", "AAAAA1"), row("1", "A2", lsp, "", "AAAAA2")},
			wantFirms:   map[string]directory.Firm{"1": {Name: "A", Type: directory.FirmLegalServicesProvider}},
			wantOffices: map[string]string{"AAAAA1": "1", "AAAAA2": "1"},
			wantItems:   []item{{ActionRejected, ObjFirm, "1", "row 1 kept"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ApplyRules(tc.rows)
			if s.Rows != len(tc.rows) {
				t.Errorf("Rows = %d", s.Rows)
			}
			if len(s.Firms) != len(tc.wantFirms) {
				t.Errorf("firms %v, want %v", s.Firms, tc.wantFirms)
			}
			for n, w := range tc.wantFirms {
				g, ok := s.Firms[n]
				if !ok || g.Name != w.Name || g.Type != w.Type || g.ParentNumber != w.ParentNumber || !g.Enabled || g.Number != n {
					t.Errorf("firm %s = %+v, want %+v", n, g, w)
				}
			}
			if len(s.Offices) != len(tc.wantOffices) {
				t.Errorf("offices %v, want %v", s.Offices, tc.wantOffices)
			}
			for c, f := range tc.wantOffices {
				if o, ok := s.Offices[c]; !ok || o.FirmNumber != f || !o.Active {
					t.Errorf("office %s = %+v, want firm %s", c, o, f)
				}
			}
			if len(s.Items) != len(tc.wantItems) {
				t.Errorf("items %+v, want %d", s.Items, len(tc.wantItems))
			}
			for _, w := range tc.wantItems {
				if !hasItem(s, w.action, w.typ, w.id, w.reason) {
					t.Errorf("missing item %+v in %+v", w, s.Items)
				}
			}
		})
	}
}

func TestApplyRulesAddress(t *testing.T) {
	r := OfficeRow{FirmNumber: "1", FirmName: "A", FirmType: lsp, OfficeAccountNumber: "AAAAA1",
		OfficeAddressLine1: " 1 High St ", OfficeAddressLine3: "Annex", OfficeAddressCity: "Leeds", OfficeAddressPostcode: "LS1 1AA"}
	o := ApplyRules([]OfficeRow{r}).Offices["AAAAA1"]
	if !slices.Equal(o.Address, []string{"1 High St", "Annex"}) || o.City != "Leeds" || o.Postcode != "LS1 1AA" {
		t.Fatalf("office %+v", o)
	}
}

func TestLoginFacts(t *testing.T) {
	s := ApplyRules([]OfficeRow{row("1", "A", lsp, "", "AAAAA1"), row("1", "A", lsp, "", "AAAAA2"), row("2", "B", lsp, "", "BBBBB1")})
	keep, rejected := s.loginFacts("1", []string{"aaaaa2", "AAAAA1", "AAAAA1", "BBBBB1", "ZZZZZ9", "bad"})
	if !slices.Equal(keep, []string{"AAAAA1", "AAAAA2"}) {
		t.Errorf("keep %v", keep)
	}
	want := []string{"office BBBBB1 belongs to firm 2, not 1", "office ZZZZZ9 is not in the snapshot", `invalid office code "bad"`}
	if !slices.Equal(rejected, want) {
		t.Errorf("rejected %q, want %q", rejected, want)
	}
}

func TestValidOfficeCode(t *testing.T) {
	for code, want := range map[string]bool{"0Q731M": true, "1A001L": true, "abc123": true, "": false, "12345": false,
		"1234567": false, "12345_": false, "12 345": false, "ÄBCDE1": false} {
		if got := ValidOfficeCode(code); got != want {
			t.Errorf("ValidOfficeCode(%q) = %v, want %v", code, got, want)
		}
	}
}
