package ldapsync

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/directory"
)

// GUIDString renders a binary Active Directory objectGUID (16 bytes, the
// first three fields little-endian) in canonical form.
func GUIDString(b []byte) (string, error) {
	if len(b) != 16 {
		return "", fmt.Errorf("ldapsync: objectGUID has %d bytes, want 16", len(b))
	}
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(b[0:4]), binary.LittleEndian.Uint16(b[4:6]),
		binary.LittleEndian.Uint16(b[6:8]), b[8:10], b[10:16]), nil
}

// normDN gives a comparison key for a DN: lower case, no spaces around
// separators. DNs with escapes or multi-valued RDNs go through the parser.
func normDN(dn string) string {
	if strings.ContainsAny(dn, `\+"#;<>`) {
		if p, err := ldap.ParseDN(dn); err == nil {
			parts := make([]string, 0, len(p.RDNs))
			for _, r := range p.RDNs {
				parts = append(parts, strings.ToLower(r.String()))
			}
			return strings.Join(parts, ",")
		}
	}
	s := strings.ToLower(dn)
	if !strings.Contains(s, " ") {
		return s
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		kv := strings.SplitN(p, "=", 2)
		for j := range kv {
			kv[j] = strings.TrimSpace(kv[j])
		}
		parts[i] = strings.Join(kv, "=")
	}
	return strings.Join(parts, ",")
}

// mapper turns entries into users and groups for one source.
type mapper struct {
	src config.LDAPSource
	ad  bool
}

func newMapper(src config.LDAPSource) *mapper {
	return &mapper{src: src, ad: src.Dialect == config.LDAPDialectAD}
}

func (m *mapper) changeAttrs() []string {
	if m.ad {
		return []string{"uSNChanged", "whenChanged"}
	}
	return []string{"modifyTimestamp"}
}

func (m *mapper) userAttrs() []string {
	a := m.src.Attributes
	attrs := []string{a.StableID, a.UserName}
	for _, x := range []string{a.Email, a.GivenName, a.FamilyName, a.DisplayName, a.FirmNumber, a.UsualRole, a.Location, a.UserType} {
		if x != "" {
			attrs = append(attrs, x)
		}
	}
	if a.DisplayName != "cn" {
		attrs = append(attrs, "cn")
	}
	if m.ad {
		attrs = append(attrs, "userAccountControl")
	}
	return append(attrs, m.changeAttrs()...)
}

func (m *mapper) groupAttrs() []string {
	attrs := []string{m.src.Attributes.StableID, m.src.Attributes.GroupName, m.src.MemberAttribute}
	return append(attrs, m.changeAttrs()...)
}

// stableID reads the entry's stable id (entryUUID as text, objectGUID binary).
func (m *mapper) stableID(e *ldap.Entry) (string, error) {
	attr := m.src.Attributes.StableID
	if strings.EqualFold(attr, "objectGUID") {
		raw := e.GetEqualFoldRawAttributeValue(attr)
		if len(raw) == 0 {
			return "", fmt.Errorf("no %s", attr)
		}
		return GUIDString(raw)
	}
	v := strings.ToLower(strings.TrimSpace(e.GetEqualFoldAttributeValue(attr)))
	if v == "" {
		return "", fmt.Errorf("no %s", attr)
	}
	return v, nil
}

// change is an entry's change marker: generalized time (OpenLDAP) or USN (AD).
type change struct {
	modTime string // "20061102150405Z" form, comparable as text after normalising
	usn     int64
}

func (m *mapper) changeOf(e *ldap.Entry) change {
	if m.ad {
		n, _ := strconv.ParseInt(e.GetEqualFoldAttributeValue("uSNChanged"), 10, 64)
		return change{usn: n}
	}
	return change{modTime: normTime(e.GetEqualFoldAttributeValue("modifyTimestamp"))}
}

// normTime turns a generalized time into YYYYMMDDHHMMSSZ (UTC), "" if unparsable.
func normTime(s string) string {
	if v, ok := canonicalTime(s); ok {
		return v // what OpenLDAP sends: checked, not parsed by layout (5% of a full sync's CPU)
	}
	return parseNormTime(s)
}

// canonicalTime recognizes s already in the YYYYMMDDHHMMSSZ form: ok with
// s when it is a valid time, ok with "" when it is not (as parsing would).
func canonicalTime(s string) (string, bool) {
	if len(s) != len(genTime) || s[len(s)-1] != 'Z' {
		return "", false
	}
	var n [6]int
	p := 0
	for i, w := range [6]int{4, 2, 2, 2, 2, 2} {
		for _, c := range []byte(s[p : p+w]) {
			if c < '0' || c > '9' {
				return "", false
			}
			n[i] = n[i]*10 + int(c-'0')
		}
		p += w
	}
	t := time.Date(n[0], time.Month(n[1]), n[2], n[3], n[4], n[5], 0, time.UTC)
	if t.Year() != n[0] || int(t.Month()) != n[1] || t.Day() != n[2] || t.Hour() != n[3] || t.Minute() != n[4] || t.Second() != n[5] {
		return "", true // out of range (month 13, 30 February, second 60): unparsable
	}
	return s, true
}

// parseNormTime is normTime by layout.
func parseNormTime(s string) string {
	t, err := parseGeneralized(s)
	if err != nil {
		return ""
	}
	return t.UTC().Format(genTime)
}

const genTime = "20060102150405Z"

func parseGeneralized(s string) (time.Time, error) {
	for _, layout := range []string{"20060102150405Z0700", "20060102150405.999999Z0700", "20060102150405Z", "20060102150405.999999Z"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("ldapsync: bad generalized time %q", s)
}

// fields are the user fields an LDAP source manages.
type fields struct {
	UserName, Email, GivenName, FamilyName, DisplayName string
	FirmNumber, UsualRole, Location, UserType           string
	Active                                              bool
}

// ldapUser is one mapped user entry.
type ldapUser struct {
	Key, DN string
	F       fields
	Change  change
	Err     string // why the entry cannot be used
}

func (m *mapper) user(e *ldap.Entry) ldapUser {
	a := m.src.Attributes
	u := ldapUser{DN: e.DN, Change: m.changeOf(e)}
	key, err := m.stableID(e)
	if err != nil {
		u.Err = err.Error()
		return u
	}
	u.Key = key
	get := func(attr string) string {
		if attr == "" {
			return ""
		}
		return strings.TrimSpace(e.GetEqualFoldAttributeValue(attr))
	}
	u.F = fields{
		UserName: get(a.UserName), Email: get(a.Email), GivenName: get(a.GivenName), FamilyName: get(a.FamilyName),
		DisplayName: get(a.DisplayName), FirmNumber: get(a.FirmNumber), UsualRole: get(a.UsualRole),
		Location: get(a.Location), UserType: get(a.UserType), Active: true,
	}
	if u.F.DisplayName == "" {
		u.F.DisplayName = get("cn")
	}
	if m.ad {
		// Every AD user has one: unreadable says nothing about ACCOUNTDISABLE.
		uac, err := strconv.ParseInt(get("userAccountControl"), 10, 64)
		if err != nil {
			u.Err = "no readable userAccountControl"
			return u
		}
		u.F.Active = uac&2 == 0 // ACCOUNTDISABLE
	}
	if u.F.UserName == "" {
		u.Err = "no " + a.UserName
	}
	return u
}

// fieldsOf extracts the managed fields of a stored user.
func (m *mapper) fieldsOf(u directory.User) fields {
	a := m.src.Attributes
	f := fields{UserName: u.UserName, Email: u.Email, GivenName: u.GivenName, FamilyName: u.FamilyName,
		DisplayName: u.DisplayName, Active: true}
	if a.Email == "" {
		f.Email = ""
	}
	if a.FirmNumber != "" {
		f.FirmNumber = u.FirmNumber
	}
	if a.UsualRole != "" {
		f.UsualRole = u.UsualRole
	}
	if a.Location != "" {
		f.Location = u.Location
	}
	if a.UserType != "" {
		f.UserType = u.UserType
	}
	if m.ad {
		f.Active = u.Active
	}
	return f
}

// apply writes f into u and returns the names of changed fields.
func (m *mapper) apply(u *directory.User, f fields) []string {
	var changed []string
	set := func(name string, dst *string, v string) {
		if *dst != v {
			*dst = v
			changed = append(changed, name)
		}
	}
	set("userName", &u.UserName, f.UserName)
	if m.src.Attributes.Email != "" && u.Email != f.Email {
		u.Email = f.Email
		var emails []directory.Email
		if f.Email != "" {
			emails = append(emails, directory.Email{Value: f.Email, Type: "work", Primary: true})
		}
		for _, e := range u.Emails {
			if !e.Primary && !strings.EqualFold(e.Value, f.Email) {
				emails = append(emails, e)
			}
		}
		u.Emails = emails
		changed = append(changed, "email")
	}
	set("givenName", &u.GivenName, f.GivenName)
	set("familyName", &u.FamilyName, f.FamilyName)
	set("displayName", &u.DisplayName, f.DisplayName)
	if m.src.Attributes.FirmNumber != "" {
		set("firmNumber", &u.FirmNumber, f.FirmNumber)
	}
	if m.src.Attributes.UsualRole != "" {
		set("usualRole", &u.UsualRole, f.UsualRole)
	}
	if m.src.Attributes.Location != "" {
		set("location", &u.Location, f.Location)
	}
	if m.src.Attributes.UserType != "" {
		set("userType", &u.UserType, f.UserType)
	}
	if m.ad && u.Active != f.Active {
		u.Active = f.Active
		changed = append(changed, "active")
	}
	return changed
}

type digest [16]byte

func (f fields) digest() digest { return f.digestWith(nil) }

// digestWith hashes prefix, then the fields.
func (f fields) digestWith(prefix []byte) digest {
	// One buffer (on the stack for usual entries) and one Sum256: the
	// same bytes as writing prefix and each field with its NUL to a hash.
	var buf [512]byte
	b := append(buf[:0], prefix...)
	for _, s := range [...]string{f.UserName, f.Email, f.GivenName, f.FamilyName, f.DisplayName, f.FirmNumber,
		f.UsualRole, f.Location, f.UserType, strconv.FormatBool(f.Active)} {
		b = append(b, s...)
		b = append(b, 0)
	}
	sum := sha256.Sum256(b)
	return digest(sum[:len(digest{})])
}

// ldapGroup is one mapped group entry with its raw member values.
type ldapGroup struct {
	Key, DN, Name string
	Members       []string
	Change        change
	Err           string
}

// group maps a group entry, following AD range retrieval
// (member;range=0-1499) with further base reads on c until the range ends.
func (m *mapper) group(c Conn, e *ldap.Entry) (ldapGroup, error) {
	g := ldapGroup{DN: e.DN, Change: m.changeOf(e), Name: strings.TrimSpace(e.GetEqualFoldAttributeValue(m.src.Attributes.GroupName))}
	key, err := m.stableID(e)
	if err != nil {
		g.Err = err.Error()
		return g, nil
	}
	g.Key = key
	if g.Name == "" {
		g.Name = e.DN
	}
	members, err := m.members(c, e)
	if err != nil {
		return g, err
	}
	g.Members = members
	return g, nil
}

// members reads the member attribute, with range retrieval.
func (m *mapper) members(c Conn, e *ldap.Entry) ([]string, error) {
	attr := m.src.MemberAttribute
	var out []string
	cur := e
	want := 0 // where the next range must start: a gap would drop members
	for round := 0; ; round++ {
		next := ""
		found := false
		for _, a := range cur.Attributes {
			name := a.Name
			if strings.EqualFold(name, attr) {
				out = append(out, a.Values...)
				found = true
				continue
			}
			lower := strings.ToLower(name)
			prefix := strings.ToLower(attr) + ";range="
			if !strings.HasPrefix(lower, prefix) {
				continue
			}
			found = true
			out = append(out, a.Values...)
			rng := lower[len(prefix):] // "0-1499" or "1500-*"
			lo, hi, ok := strings.Cut(rng, "-")
			if !ok {
				return nil, fmt.Errorf("ldapsync: group %q: bad range %q", e.DN, name)
			}
			if start, err := strconv.Atoi(lo); err != nil || start != want {
				return nil, fmt.Errorf("ldapsync: group %q: range %q does not start at %d", e.DN, name, want)
			}
			if hi != "*" {
				end, err := strconv.Atoi(hi)
				if err != nil || end < want {
					return nil, fmt.Errorf("ldapsync: group %q: bad range %q", e.DN, name)
				}
				want = end + 1
				next = fmt.Sprintf("%s;range=%d-*", attr, want)
			}
		}
		if !found && round > 0 {
			return nil, fmt.Errorf("ldapsync: group %q: range retrieval returned no %s values", e.DN, attr)
		}
		if next == "" {
			return out, nil
		}
		if round > 100000 {
			return nil, fmt.Errorf("ldapsync: group %q: range retrieval does not end", e.DN)
		}
		ne, err := readBase(c, e.DN, []string{next})
		if err != nil {
			return nil, fmt.Errorf("ldapsync: range retrieval %q: %w", e.DN, err)
		}
		cur = ne
	}
}
