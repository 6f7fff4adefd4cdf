package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLDAPExampleSection(t *testing.T) {
	b, err := os.ReadFile("../ldapsync/testdata/example-ldap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(t.TempDir(), "ad-password")
	if err := os.WriteFile(pw, []byte("ad-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DIRSYNCD_LDAP_PASSWORD", "ol-secret")
	c, err := Parse([]byte(strings.ReplaceAll(string(b), "/run/secrets/ad-password", pw)))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	ol, ok := c.LDAP.Source("corp-openldap")
	if !ok || ol.BindPassword.Value() != "ol-secret" || !ol.StartTLS || ol.Overlap != 5*time.Minute || !ol.NestedEnabled() {
		t.Fatalf("corp-openldap = %+v", ol)
	}
	ad, _ := c.LDAP.Source("corp-ad")
	if ad.BindPassword.Value() != "ad-secret" || ad.Attributes.StableID != "objectGUID" || ad.Attributes.UserName != "sAMAccountName" ||
		ad.PageSize != 1000 || ad.GroupPageSize != 100 || ad.ShrinkGuard() != 0.5 || ad.Referrals != LDAPReferralsAbort || ad.GroupBaseDNs[0] != "OU=Staff,DC=corp,DC=example" ||
		!strings.Contains(ad.UserFilter, "objectCategory=person") {
		t.Fatalf("corp-ad defaults = %+v", ad)
	}
}

func TestLDAPValidateReportsEveryProblem(t *testing.T) {
	c := LDAPConfig{Sources: []LDAPSource{
		{Name: "a", URL: "http://x", Dialect: "novell", MemberAttribute: "members", BindDN: "cn=x", Correlate: []string{"phone"}, Referrals: "follow"},
		{Name: "a", URL: "ldaps://x", StartTLS: true, UserBaseDNs: []string{"dc=x", "corp"}, MinFullFraction: ptr(2.0), GroupPageSize: -1, ClientCertFile: "c.pem"},
	}}
	c.defaults()
	var p Problems
	c.validate(&p)
	var ve *ValidationError
	if !errors.As(p.Err(), &ve) {
		t.Fatal("no problems reported")
	}
	all := strings.Join(ve.Problems, "\n")
	for _, want := range []string{
		"ldap.sources[0].url", "ldap.sources[0].dialect", "ldap.sources[0].memberAttribute", "ldap.sources[0].bindPassword",
		"ldap.sources[0].userBaseDNs", "ldap.sources[0].correlate[0]", "ldap.sources[1].name: duplicate",
		"ldap.sources[1].startTLS", "is not a DN", "ldap.sources[1].minFullFraction", "ldap.sources[1].groupPageSize", "ldap.sources[1].clientCertFile",
		"ldap.sources[0].referrals: want abort or ignore",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("missing problem %q in:\n%s", want, all)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestLDAPMinFullFraction: omitted means 0.5, an explicit 0 switches the
// shrink guard off, values outside 0..1 are refused with the key named.
func TestLDAPMinFullFraction(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       float64
		wantErr    string
	}{
		{"omitted", "", 0.5, ""},
		{"explicit zero is off", "      minFullFraction: 0\n", 0, ""},
		{"explicit", "      minFullFraction: 0.8\n", 0.8, ""},
		{"negative", "      minFullFraction: -1\n", 0, "ldap.sources[0].minFullFraction: want 0..1 (0 switches the shrink guard off), got -1"},
		{"above one", "      minFullFraction: 1.5\n", 0, "ldap.sources[0].minFullFraction: want 0..1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte("ldap:\n  sources:\n    - name: corp\n      url: ldap://127.0.0.1:389\n      userBaseDNs: [\"ou=people,dc=x\"]\n" + tc.yaml))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s, _ := c.LDAP.Source("corp")
			if got := s.ShrinkGuard(); got != tc.want {
				t.Errorf("ShrinkGuard() = %g, want %g", got, tc.want)
			}
		})
	}
}

func TestLDAPGroupPage(t *testing.T) {
	for _, tc := range []struct {
		page, group, want int
	}{{0, 0, 100}, {1000, 0, 100}, {2, 0, 2}, {1000, 500, 500}, {10, 50, 50}} {
		s := LDAPSource{PageSize: tc.page, GroupPageSize: tc.group}
		if got := s.GroupPage(); got != tc.want {
			t.Errorf("pageSize %d groupPageSize %d: GroupPage() = %d, want %d", tc.page, tc.group, got, tc.want)
		}
	}
}

// TestLDAPValidateFilters: a filter that does not compile is a problem
// found when the configuration is loaded (not at the first sync), named by
// its own key.
func TestLDAPValidateFilters(t *testing.T) {
	c := LDAPConfig{Sources: []LDAPSource{{Name: "a", URL: "ldap://x", UserBaseDNs: []string{"dc=x"},
		UserFilter: "(objectClass=user", GroupFilter: "(&(cn=x)(member=*)"}}}
	c.defaults()
	var p Problems
	c.validate(&p)
	all := strings.Join(p.List(), "\n")
	for _, want := range []string{"ldap.sources[0].userFilter", "ldap.sources[0].groupFilter"} {
		if !strings.Contains(all, want) {
			t.Errorf("missing problem %q in:\n%s", want, all)
		}
	}
}

// TestLDAPEmptyBindPassword: a bindPassword that resolves to nothing (an
// empty secret file) is a problem: a bind DN with an empty password is an
// unauthenticated bind that servers may accept as anonymous.
func TestLDAPEmptyBindPassword(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/pw"
	if err := os.WriteFile(path, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := Secret{ref: "file:" + path, set: true}
	if err := s.resolve(); err != nil {
		t.Fatal(err)
	}
	c := LDAPConfig{Sources: []LDAPSource{{Name: "a", URL: "ldap://x", UserBaseDNs: []string{"dc=x"}, BindDN: "cn=x", BindPassword: s}}}
	c.defaults()
	var p Problems
	c.validate(&p)
	if all := strings.Join(p.List(), "\n"); !strings.Contains(all, "ldap.sources[0].bindPassword") {
		t.Fatalf("empty bind password not reported:\n%s", all)
	}
}
