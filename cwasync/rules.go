package cwasync

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/dirsyncd/dirsyncd/directory"
)

// Run item actions and object types this package reports.
const (
	ActionCreated   = "created"
	ActionUpdated   = "updated"
	ActionDisabled  = "disabled"  // firm missing from the snapshot; office gone
	ActionDropped   = "dropped"   // office without a firm, firm without offices
	ActionRejected  = "rejected"  // invalid row or value, not imported
	ActionRepaired  = "repaired"  // imported with a correction (parent cleared, name made unique)
	ActionLinked    = "linked"    // legacy login linked to a user by e-mail
	ActionUnlinked  = "unlinked"  // link removed (e-mail no longer matches, login gone)
	ActionUnmatched = "unmatched" // legacy login with no user of that e-mail
	ActionGone      = "gone"      // legacy login no longer listed by CWA

	ObjFirm        = "firm"
	ObjOffice      = "office"
	ObjLegacyLogin = "legacy_login"
)

// FirmTypes maps CWA's spelling of firm types to directory.FirmType.
var FirmTypes = map[string]directory.FirmType{
	"Legal Services Provider": directory.FirmLegalServicesProvider,
	"Chambers":                directory.FirmChambers,
	"Advocate":                directory.FirmAdvocate,
}

// ValidOfficeCode reports whether s is an office account code: exactly 6
// ASCII letters or digits (e.g. 0Q731M).
func ValidOfficeCode(s string) bool {
	if len(s) != 6 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}

// normalizeCode upper-cases an office code (CWA codes are upper case; a
// lower-case copy is the same office).
func normalizeCode(s string) string { return strings.ToUpper(strings.TrimSpace(s)) }

// Snapshot is the office snapshot after the agency's rules: the firms and
// offices to import, and what was dropped, rejected or repaired on the way.
type Snapshot struct {
	Rows    int                         // rows CWA returned
	Firms   map[string]directory.Firm   // by number; Enabled, no Version
	Offices map[string]directory.Office // by code; Active
	Items   []directory.RunItem         // dropped, rejected, repaired (no RunID)
	// Held are firms the snapshot lists only in rejected rows (or with
	// only offices it lists for two firms), and HeldOffices offices it
	// lists for two firms: present, but not
	// importable. A bad row is not an absence: the sync leaves what the
	// store holds of them as it is (no firm disabled, office deactivated,
	// login emptied or link removed on their account).
	Held        map[string]bool
	HeldOffices map[string]bool
}

// ApplyRules turns snapshot rows into firms and offices:
//   - rows with an invalid office code (not 6 alphanumeric characters), an
//     unknown firm type or no firm name are rejected;
//   - an office without a firm is dropped; a firm with no valid office is
//     dropped;
//   - an office code listed for two firms is rejected for both;
//   - a firm listed with different names, types or parents keeps its first
//     row's values (the others are reported);
//   - a parent that is an advocate, is the firm itself or is not in the
//     snapshot is cleared, and so is a parent that has a parent of its own
//     (one level deep) — each reported as repaired;
//   - a firm name shared by several firms gets " (firmNumber)" appended to
//     each of them, so the result does not depend on row order.
func ApplyRules(rows []OfficeRow) *Snapshot {
	s := &Snapshot{Rows: len(rows), Firms: map[string]directory.Firm{}, Offices: map[string]directory.Office{},
		Held: map[string]bool{}, HeldOffices: map[string]bool{}}
	report := func(action, typ, id, format string, args ...any) {
		s.Items = append(s.Items, directory.RunItem{Action: action, ObjectType: typ, ObjectID: id, Reason: fmt.Sprintf(format, args...)})
	}
	type firmRow struct {
		f        directory.Firm
		firstRow int
	}
	firms := map[string]*firmRow{}
	var firmOrder []string
	officeFirm := map[string]string{}  // code -> firm number of its first valid row
	conflicted := map[string]bool{}    // codes listed for two firms
	conflictFirms := map[string]bool{} // firms listing one of them

	for i, r := range rows {
		num := string(r.FirmNumber)
		code := normalizeCode(r.OfficeAccountNumber)
		rowID := fmt.Sprintf("row %d", i+1)
		if num == "" {
			id := code
			if id == "" {
				id = rowID
			}
			report(ActionDropped, ObjOffice, id, "office without a firm (snapshot %s)", rowID)
			continue
		}
		typ, okType := FirmTypes[strings.TrimSpace(r.FirmType)]
		name := strings.TrimSpace(r.FirmName)
		switch {
		case !okType:
			report(ActionRejected, ObjFirm, num, "unknown firm type %q (snapshot %s)", r.FirmType, rowID)
			s.Held[num] = true
			continue
		case name == "":
			report(ActionRejected, ObjFirm, num, "firm without a name (snapshot %s)", rowID)
			s.Held[num] = true
			continue
		}
		parent := string(r.ParentFirmNumber)
		if fr, seen := firms[num]; !seen {
			firms[num] = &firmRow{f: directory.Firm{Number: num, Name: name, Type: typ, ParentNumber: parent, Enabled: true}, firstRow: i + 1}
			firmOrder = append(firmOrder, num)
		} else if fr.f.Name != name || fr.f.Type != typ || fr.f.ParentNumber != parent {
			report(ActionRejected, ObjFirm, num, "snapshot %s disagrees with row %d about the firm's name, type or parent; row %d kept", rowID, fr.firstRow, fr.firstRow)
		}
		if code == "" {
			continue // a firm row without an office: the firm is dropped below unless another row has one
		}
		if !ValidOfficeCode(code) {
			report(ActionRejected, ObjOffice, code, "invalid office code %q of firm %s: want 6 letters or digits (snapshot %s)", r.OfficeAccountNumber, num, rowID)
			continue
		}
		if prev, seen := officeFirm[code]; seen {
			if prev != num && !conflicted[code] {
				conflicted[code] = true
				report(ActionRejected, ObjOffice, code, "office listed for firms %s and %s (snapshot %s)", prev, num, rowID)
			}
			if prev != num {
				conflictFirms[prev], conflictFirms[num] = true, true
			}
			continue
		}
		officeFirm[code] = num
		var addr []string
		for _, l := range []string{r.OfficeAddressLine1, r.OfficeAddressLine2, r.OfficeAddressLine3} {
			if l = strings.TrimSpace(l); l != "" {
				addr = append(addr, l)
			}
		}
		s.Offices[code] = directory.Office{Code: code, FirmNumber: num, Address: addr,
			City: strings.TrimSpace(r.OfficeAddressCity), Postcode: strings.TrimSpace(r.OfficeAddressPostcode), Active: true}
	}
	for code := range conflicted {
		delete(s.Offices, code)
		s.HeldOffices[code] = true
	}
	hasOffice := map[string]bool{}
	for _, o := range s.Offices {
		hasOffice[o.FirmNumber] = true
	}
	for _, num := range firmOrder {
		if !hasOffice[num] {
			report(ActionDropped, ObjFirm, num, "firm without offices")
			if conflictFirms[num] { // its offices are only in dispute
				s.Held[num] = true
			}
			continue
		}
		s.Firms[num] = firms[num].f
	}
	for num := range s.Held {
		if _, ok := s.Firms[num]; ok { // a valid row imports it
			delete(s.Held, num)
		}
	}

	// Hierarchy: first clear impossible parents, then enforce one level.
	nums := make([]string, 0, len(s.Firms))
	for n := range s.Firms {
		nums = append(nums, n)
	}
	sort.Strings(nums)
	for _, n := range nums {
		f := s.Firms[n]
		if f.ParentNumber == "" {
			continue
		}
		p, ok := s.Firms[f.ParentNumber]
		reason := ""
		switch {
		case f.ParentNumber == n:
			reason = "a firm cannot be its own parent"
		case !ok:
			reason = fmt.Sprintf("parent firm %s is not in the snapshot", f.ParentNumber)
		case p.Type == directory.FirmAdvocate:
			reason = fmt.Sprintf("parent firm %s is an advocate; an advocate is never a parent", f.ParentNumber)
		}
		if reason != "" {
			report(ActionRepaired, ObjFirm, n, "parent cleared: %s", reason)
			f.ParentNumber = ""
			s.Firms[n] = f
		}
	}
	var deep []string
	for _, n := range nums {
		f := s.Firms[n]
		if f.ParentNumber != "" && s.Firms[f.ParentNumber].ParentNumber != "" {
			deep = append(deep, n)
		}
	}
	for _, n := range deep { // decided on the graph above, so the order does not matter
		f := s.Firms[n]
		report(ActionRepaired, ObjFirm, n, "parent cleared: parent firm %s has a parent itself; the hierarchy is one level deep", f.ParentNumber)
		f.ParentNumber = ""
		s.Firms[n] = f
	}

	// Unique names.
	byName := map[string][]string{}
	for _, n := range nums {
		k := strings.ToLower(s.Firms[n].Name)
		byName[k] = append(byName[k], n)
	}
	for _, n := range nums {
		f := s.Firms[n]
		if len(byName[strings.ToLower(f.Name)]) > 1 {
			report(ActionRepaired, ObjFirm, n, "name %q is shared by firms %s; firm number appended", f.Name, strings.Join(byName[strings.ToLower(f.Name)], ", "))
			f.Name = f.Name + " (" + n + ")"
			s.Firms[n] = f
		}
	}
	return s
}

// loginFacts validates the office codes CWA returned for a login of firm:
// codes that are not valid, or not an office of that firm in the snapshot,
// are left out and explained. The result is sorted and de-duplicated.
func (s *Snapshot) loginFacts(firm string, codes []string) (keep []string, rejected []string) {
	for _, c := range codes {
		n := normalizeCode(c)
		switch o, ok := s.Offices[n]; {
		case !ValidOfficeCode(n):
			rejected = append(rejected, fmt.Sprintf("invalid office code %q", c))
		case !ok:
			rejected = append(rejected, fmt.Sprintf("office %s is not in the snapshot", n))
		case o.FirmNumber != firm:
			rejected = append(rejected, fmt.Sprintf("office %s belongs to firm %s, not %s", n, o.FirmNumber, firm))
		default:
			keep = append(keep, n)
		}
	}
	slices.Sort(keep)
	return slices.Compact(keep), rejected
}
