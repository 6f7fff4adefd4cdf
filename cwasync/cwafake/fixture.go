package cwafake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Fixture is the fake's data: the snapshot rows exactly as the snapshot
// endpoint returns them (bad rows included, to exercise the snapshot rules),
// and the legacy logins with their firm and office codes.
type Fixture struct {
	Offices []OfficeRow `json:"offices"`
	Users   []User      `json:"users"`
}

// OfficeRow is one row of /provider-offices/snapshot.
type OfficeRow struct {
	FirmNumber            string `json:"firmNumber"`
	FirmName              string `json:"firmName"`
	FirmType              string `json:"firmType"` // Legal Services Provider, Chambers, Advocate
	ParentFirmNumber      string `json:"parentFirmNumber,omitempty"`
	OfficeAccountNumber   string `json:"officeAccountNumber"`
	OfficeAddressLine1    string `json:"officeAddressLine1,omitempty"`
	OfficeAddressLine2    string `json:"officeAddressLine2,omitempty"`
	OfficeAddressLine3    string `json:"officeAddressLine3,omitempty"`
	OfficeAddressCity     string `json:"officeAddressCity,omitempty"`
	OfficeAddressPostcode string `json:"officeAddressPostcode,omitempty"`
}

// User is a legacy CWA login of a firm. FirmNumber and OfficeCodes are
// served by the per-firm and per-user endpoints, not in the user object.
type User struct {
	UserLogin   string   `json:"userLogin"`
	FirmNumber  string   `json:"firmNumber"`
	FirstName   string   `json:"firstName,omitempty"`
	LastName    string   `json:"lastName,omitempty"`
	Email       string   `json:"email,omitempty"`
	OfficeCodes []string `json:"officeCodes,omitempty"`
}

// LoadFixture reads a JSON fixture file; unknown keys are errors.
func LoadFixture(path string) (*Fixture, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cwafake: read fixture: %w", err)
	}
	fx, err := ParseFixture(b)
	if err != nil {
		return nil, fmt.Errorf("cwafake: fixture %s: %w", path, err)
	}
	return fx, nil
}

// ParseFixture decodes a JSON fixture; unknown keys are errors.
func ParseFixture(b []byte) (*Fixture, error) {
	var fx Fixture
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fx); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return &fx, nil
}

// Clone returns a deep copy, so a test can change the copy and serve it.
func (fx *Fixture) Clone() *Fixture {
	c := &Fixture{Offices: append([]OfficeRow(nil), fx.Offices...), Users: make([]User, len(fx.Users))}
	for i, u := range fx.Users {
		u.OfficeCodes = append([]string(nil), u.OfficeCodes...)
		c.Users[i] = u
	}
	return c
}

// GenOptions sizes a generated fixture.
type GenOptions struct {
	Firms          int // every 10th firm is chambers, every 10th+1 an advocate under the chambers
	OfficesPerFirm int
	Logins         int // spread evenly over the firms
	// EmailDomain of the logins' e-mails: login i has "user<i>@<domain>".
	EmailDomain string
}

// Generate builds a valid fixture (no row breaks a snapshot rule): firm
// numbers "F<n>", office codes of 6 alphanumeric characters, each login with
// one or two office codes of its firm.
func Generate(o GenOptions) *Fixture {
	if o.EmailDomain == "" {
		o.EmailDomain = "example.test"
	}
	fx := &Fixture{}
	code := 0
	offices := make([][]string, o.Firms)
	for f := 0; f < o.Firms; f++ {
		num := "F" + strconv.Itoa(100000+f)
		typ, parent := "Legal Services Provider", ""
		switch f % 10 {
		case 0:
			typ = "Chambers"
		case 1:
			typ = "Advocate"
			parent = "F" + strconv.Itoa(100000+f-1)
		}
		for k := 0; k < o.OfficesPerFirm; k++ {
			c := OfficeCode(code)
			code++
			offices[f] = append(offices[f], c)
			fx.Offices = append(fx.Offices, OfficeRow{
				FirmNumber: num, FirmName: "Firm " + strconv.Itoa(f), FirmType: typ, ParentFirmNumber: parent,
				OfficeAccountNumber: c, OfficeAddressLine1: strconv.Itoa(k+1) + " High Street",
				OfficeAddressCity: "Leeds", OfficeAddressPostcode: "LS1 1AA",
			})
		}
	}
	for i := 0; i < o.Logins && o.Firms > 0; i++ {
		f := i % o.Firms
		u := User{
			UserLogin: "LOGIN" + strconv.Itoa(i), FirmNumber: "F" + strconv.Itoa(100000+f),
			FirstName: "First" + strconv.Itoa(i), LastName: "Last" + strconv.Itoa(i),
			Email: "user" + strconv.Itoa(i) + "@" + o.EmailDomain,
		}
		if n := len(offices[f]); n > 0 {
			u.OfficeCodes = append(u.OfficeCodes, offices[f][i%n])
			if i%3 == 0 && n > 1 {
				u.OfficeCodes = append(u.OfficeCodes, offices[f][(i+1)%n])
			}
		}
		fx.Users = append(fx.Users, u)
	}
	return fx
}

// OfficeCode returns the i-th generated office code: 6 upper-case
// alphanumeric characters ("2A0000" onwards), distinct for distinct i.
func OfficeCode(i int) string {
	return strings.ToUpper(strconv.FormatInt(int64(i)+2*36*36*36*36*36+10*36*36*36*36, 36))
}
