package directory

import "testing"

func TestFirmTypeValid(t *testing.T) {
	for _, ft := range []FirmType{FirmLegalServicesProvider, FirmChambers, FirmAdvocate} {
		if !ft.Valid() {
			t.Errorf("%s should be valid", ft)
		}
	}
	for _, ft := range []FirmType{"", "Chambers", "LSP"} {
		if ft.Valid() {
			t.Errorf("%q should be invalid", ft)
		}
	}
}

func TestGrantKey(t *testing.T) {
	g := Grant{UserID: "u", FirmNumber: "1", Service: "ccms", Role: "r", Offices: []string{"0Q731M"}}
	if g.Key() != (GrantKey{"u", "1", "ccms", "r"}) {
		t.Fatalf("key %+v", g.Key())
	}
}
