package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

func TestSlapdStartStopTLS(t *testing.T) {
	s := Slapd(t, SlapdOptions{TLS: true, LDIF: "dn: ou=people,dc=example,dc=org\nobjectClass: organizationalUnit\nou: people\n"})
	search := func() int {
		t.Helper()
		c, err := ldap.DialURL(s.URL())
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(s.CAPEM()) {
			t.Fatal("bad CA PEM")
		}
		if err := c.StartTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}); err != nil {
			t.Fatalf("starttls: %v", err)
		}
		if err := c.Bind(s.BindDN(), s.Password()); err != nil {
			t.Fatalf("bind: %v", err)
		}
		r, err := c.Search(ldap.NewSearchRequest(s.Suffix(), ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", nil, nil))
		if err != nil {
			t.Fatalf("search: %v", err)
		}
		return len(r.Entries)
	}
	if n := search(); n != 2 {
		t.Fatalf("entries = %d, want 2 (suffix + ou)", n)
	}
	s.Stop()
	if _, err := ldap.DialURL(s.URL()); err == nil {
		t.Fatal("dial succeeded after Stop")
	}
	s.LoadLDIF("dn: ou=groups,dc=example,dc=org\nobjectClass: organizationalUnit\nou: groups\n")
	s.Start()
	s.Modify("dn: ou=more,dc=example,dc=org\nchangetype: add\nobjectClass: organizationalUnit\nou: more\n")
	if n := search(); n != 4 {
		t.Fatalf("entries after restart = %d, want 4", n)
	}
}
