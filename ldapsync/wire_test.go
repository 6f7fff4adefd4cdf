package ldapsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/internal/testenv"
)

// wireLDIF adds to the fixture what stresses the decoder: many values,
// UTF-8, a binary value, and a group whose entry is longer than 64 KiB
// (lengths in three bytes).
func wireLDIF(t *testing.T) string {
	var b strings.Builder
	b.WriteString(fixture(t))
	b.WriteString("\ndn: uid=zoë,ou=people," + suffix + "\nobjectClass: inetOrgPerson\nuid: zoë\ncn: Zoë Ångström\nsn: Ångström\n" +
		"mail: zoe@firm.example\nmail: zoe.a@firm.example\nmail: z@firm.example\ntelephoneNumber: +44 1\ntelephoneNumber: +44 2\n" +
		"jpegPhoto:: AAECA/8A/v0=\ndescription: " + strings.Repeat("x", 300) + "\n")
	b.WriteString("\ndn: cn=big,ou=groups," + suffix + "\nobjectClass: groupOfNames\ncn: big\n")
	for i := range 3000 {
		fmt.Fprintf(&b, "member: uid=member%04d,ou=people,%s\n", i, suffix)
	}
	return b.String()
}

func goLDAPDial(t *testing.T, s *testenv.SlapdServer, password string) (*ldap.Conn, error) {
	t.Helper()
	c, err := ldap.DialURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Bind(s.BindDN(), password); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func wireSource(s *testenv.SlapdServer, password string) config.LDAPSource {
	src := config.LDAPSource{Name: "wire", URL: s.URL(), BindDN: s.BindDN(), BindPassword: config.NewSecret(password),
		UserBaseDNs: []string{"ou=people," + suffix}, GroupBaseDNs: []string{"ou=groups," + suffix},
		RequestTimeout: 10 * time.Second, DialTimeout: 5 * time.Second}
	src.ApplyDefaults()
	return src
}

// readAll pages through a search on c and returns every page's entries
// and the last error.
func readAll(c Conn, base, filter string, attrs []string, page int, scope, sizeLimit int) ([][]*ldap.Entry, uint16, error) {
	var pages [][]*ldap.Entry
	paging := ldap.NewControlPaging(uint32(page))
	for {
		req := ldap.NewSearchRequest(base, scope, ldap.NeverDerefAliases, sizeLimit, 0, false, filter, attrs, []ldap.Control{paging})
		res, err := c.Search(req)
		if err != nil {
			var le *ldap.Error
			code := uint16(0)
			if errors.As(err, &le) {
				code = le.ResultCode
			}
			return pages, code, err
		}
		pages = append(pages, res.Entries)
		ctl, _ := ldap.FindControl(res.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
		if ctl == nil || len(ctl.Cookie) == 0 {
			return pages, 0, nil
		}
		paging.SetCookie(ctl.Cookie)
	}
}

// TestWireConnMatchesGoLDAP: on a real slapd, every search the sync makes
// (and the failures it must tell apart) reads the same through wireConn as
// through go-ldap's own connection: entries, attribute order, values and
// raw bytes, pages, result codes.
func TestWireConnMatchesGoLDAP(t *testing.T) {
	s := testenv.Slapd(t, testenv.SlapdOptions{LDIF: wireLDIF(t)})
	gl, err := goLDAPDial(t, s, s.Password())
	if err != nil {
		t.Fatal(err)
	}
	defer gl.Close()
	wc, err := Dial(context.Background(), wireSource(s, s.Password()))
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	if _, ok := wc.(*wireConn); !ok {
		t.Fatalf("Dial returned %T, want *wireConn", wc)
	}
	m := newMapper(wireSource(s, s.Password()))
	for _, tc := range []struct {
		name, base, filter string
		attrs              []string
		page, scope, limit int
		wantCode           uint16
		wantEntries        int
	}{
		{name: "users paged by 2", base: "ou=people," + suffix, filter: "(objectClass=inetOrgPerson)", attrs: m.userAttrs(), page: 2, scope: ldap.ScopeWholeSubtree},
		{name: "all attributes", base: suffix, filter: "(objectClass=*)", attrs: []string{"*", "+"}, page: 1000, scope: ldap.ScopeWholeSubtree},
		{name: "groups", base: "ou=groups," + suffix, filter: "(objectClass=groupOfNames)", attrs: m.groupAttrs(), page: 1, scope: ldap.ScopeWholeSubtree},
		{name: "no attributes", base: suffix, filter: "(uid=*)", attrs: []string{"1.1"}, page: 3, scope: ldap.ScopeWholeSubtree},
		{name: "base read", base: "cn=big,ou=groups," + suffix, filter: "(objectClass=*)", attrs: []string{"member", "cn"}, page: 10, scope: ldap.ScopeBaseObject, wantEntries: 1},
		{name: "no such entry", base: "ou=nowhere," + suffix, filter: "(objectClass=*)", page: 10, scope: ldap.ScopeWholeSubtree, wantCode: ldap.LDAPResultNoSuchObject},
		{name: "size limit", base: suffix, filter: "(objectClass=inetOrgPerson)", attrs: []string{"uid"}, page: 1000, scope: ldap.ScopeWholeSubtree, limit: 1, wantCode: ldap.LDAPResultSizeLimitExceeded},
		{name: "bad filter", base: suffix, filter: "(uid=", page: 10, scope: ldap.ScopeWholeSubtree, wantCode: ldap.ErrorFilterCompile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, wantCode, wantErr := readAll(gl, tc.base, tc.filter, tc.attrs, tc.page, tc.scope, tc.limit)
			got, gotCode, gotErr := readAll(wc, tc.base, tc.filter, tc.attrs, tc.page, tc.scope, tc.limit)
			if wantCode != tc.wantCode || gotCode != tc.wantCode {
				t.Fatalf("result codes go-ldap %d (%v), wire %d (%v), want %d", wantCode, wantErr, gotCode, gotErr, tc.wantCode)
			}
			if (wantErr == nil) != (gotErr == nil) {
				t.Fatalf("errors differ: go-ldap %v, wire %v", wantErr, gotErr)
			}
			if len(got) != len(want) {
				t.Fatalf("%d pages, go-ldap read %d", len(got), len(want))
			}
			n := 0
			for i := range want {
				if len(got[i]) != len(want[i]) {
					t.Fatalf("page %d: %d entries, go-ldap %d", i, len(got[i]), len(want[i]))
				}
				for j := range want[i] {
					if !reflect.DeepEqual(got[i][j], want[i][j]) {
						t.Fatalf("page %d entry %d:\n wire   %s\n go-ldap %s", i, j, dumpEntry(got[i][j]), dumpEntry(want[i][j]))
					}
					n++
				}
			}
			if tc.wantEntries > 0 && n != tc.wantEntries || tc.wantCode == 0 && n == 0 {
				t.Fatalf("%d entries read", n)
			}
		})
	}
	// The big group's entry crossed 64 KiB and kept all its members.
	pages, _, err := readAll(wc, "cn=big,ou=groups,"+suffix, "(objectClass=*)", []string{"member"}, 10, ldap.ScopeBaseObject, 0)
	if err != nil || len(pages) != 1 || len(pages[0]) != 1 || len(pages[0][0].GetAttributeValues("member")) != 3000 {
		t.Fatalf("big group: %v, %v", pages, err)
	}
	// The connection is usable after failed requests, and ends cleanly.
	if err := wc.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if _, err := wc.Search(ldap.NewSearchRequest(suffix, ldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", nil, nil)); err == nil {
		t.Fatal("search after close succeeded")
	}
}

func dumpEntry(e *ldap.Entry) string {
	var b strings.Builder
	b.WriteString(e.DN)
	for _, a := range e.Attributes {
		fmt.Fprintf(&b, " %s=%q", a.Name, a.Values)
	}
	return b.String()
}

// TestWireConnBindAndTLS: a wrong password is the server's invalid
// credentials (49), as through go-ldap; StartTLS and ldaps:// need the
// CA, and with it read the same entries as plain LDAP.
func TestWireConnBindAndTLS(t *testing.T) {
	s := testenv.Slapd(t, testenv.SlapdOptions{TLS: true, LDIF: fixture(t)})
	ctx := context.Background()
	_, gerr := goLDAPDial(t, s, "wrong")
	_, werr := Dial(ctx, wireSource(s, "wrong"))
	if !ldap.IsErrorWithCode(gerr, ldap.LDAPResultInvalidCredentials) || !ldap.IsErrorWithCode(werr, ldap.LDAPResultInvalidCredentials) {
		t.Fatalf("wrong password: go-ldap %v, wire %v", gerr, werr)
	}
	if strings.Contains(werr.Error(), "wrong") {
		t.Fatalf("the error shows the password: %v", werr)
	}
	plain, err := Dial(ctx, wireSource(s, s.Password()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	want, _, err := readAll(plain, suffix, "(objectClass=*)", nil, 100, ldap.ScopeWholeSubtree, 0)
	if err != nil || len(want) == 0 || len(want[0]) < 5 {
		t.Fatalf("plain read: %d pages, %v", len(want), err)
	}
	for _, tc := range []struct {
		name     string
		url      string
		startTLS bool
	}{
		{"starttls", s.URL(), true},
		{"ldaps", s.LDAPSURL(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := wireSource(s, s.Password())
			src.URL, src.StartTLS, src.ServerName = tc.url, tc.startTLS, "127.0.0.1"
			if c, err := Dial(ctx, src); err == nil {
				c.Close()
				t.Fatal("connected without the CA")
			}
			src.CAFile = s.CAFile()
			c, err := Dial(ctx, src)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got, _, err := readAll(c, suffix, "(objectClass=*)", nil, 100, ldap.ScopeWholeSubtree, 0)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("read over TLS differs from plain: %v", err)
			}
		})
	}
}

// serveOnce answers one request on a pipe with the given raw messages.
func serveOnce(t *testing.T, replies ...[]byte) *wireConn {
	t.Helper()
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close(); server.Close() })
	go func() {
		p, err := ber.ReadPacket(server)
		if err != nil || p == nil {
			return
		}
		for _, r := range replies {
			if _, err := server.Write(r); err != nil {
				return
			}
		}
	}()
	return newWireConn(client, 5*time.Second)
}

func message(id int64, op *ber.Packet) []byte {
	env := envelope(id)
	env.AppendChild(op)
	return env.Bytes()
}

func searchDone(code int64, diag string) *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, appSearchDone, nil, "done")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, code, "code"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "matched"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, diag, "diag"))
	return op
}

func entryPacket(dn string, attrs map[string][]string, order ...string) *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, appSearchEntry, nil, "entry")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, dn, "dn"))
	list := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "attrs")
	for _, name := range order {
		a := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "attr")
		a.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, name, "type"))
		set := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "vals")
		for _, v := range attrs[name] {
			set.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, v, "val"))
		}
		a.AppendChild(set)
		list.AppendChild(a)
	}
	op.AppendChild(list)
	return op
}

// TestWireConnProtocolFaults: what a server or the network can do wrong is
// an error, never a partial result taken as complete nor a panic or a huge
// allocation.
func TestWireConnProtocolFaults(t *testing.T) {
	req := ldap.NewSearchRequest(suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false, "(objectClass=*)", nil, nil)
	notice := ber.Encode(ber.ClassApplication, ber.TypeConstructed, appExtendedResponse, nil, "notice")
	for _, c := range searchDone(ldap.LDAPResultUnavailable, "shutting down").Children {
		notice.AppendChild(c)
	}
	entry := message(1, entryPacket("uid=a,"+suffix, map[string][]string{"uid": {"a"}}, "uid"))
	for _, tc := range []struct {
		name    string
		replies [][]byte
		want    string
	}{
		{"notice of disconnection", [][]byte{entry, message(0, notice)}, "notice of disconnection"},
		{"connection closed mid-search", [][]byte{entry}, "closed"},
		{"huge length", [][]byte{{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff}}, "more than"},
		{"not a sequence", [][]byte{{0x04, 0x01, 0x00}}, "want a SEQUENCE"},
		{"entry cut short", [][]byte{entry[:len(entry)-2], {0x00, 0x00}}, "malformed"},
		{"unexpected op", [][]byte{message(1, ber.Encode(ber.ClassApplication, ber.TypeConstructed, appBindResponse, nil, "bind"))}, "tag 0x61"},
		{"busy", [][]byte{entry, message(1, searchDone(ldap.LDAPResultBusy, "try later"))}, "try later"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := serveOnce(t, tc.replies...)
			if tc.name == "connection closed mid-search" {
				go func() { time.Sleep(50 * time.Millisecond); c.nc.Close() }()
			}
			res, err := c.Search(req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q (result %+v)", err, tc.want, res)
			}
		})
	}
	// A reply to another message id is an error, not skipped: entries sent
	// under a wrong id would otherwise go missing from a read that looks
	// complete.
	c := serveOnce(t, entry, message(7, entryPacket("uid=b,"+suffix, map[string][]string{"uid": {"b"}}, "uid")), message(1, searchDone(0, "")))
	if res, err := c.Search(req); err == nil || !strings.Contains(err.Error(), "message 7") {
		t.Fatalf("res %+v, err %v", res, err)
	}
}

// FuzzDecodeEntry: the decoder never panics, and what it accepts is what
// asn1-ber's generic decoder reads from the same bytes.
func FuzzDecodeEntry(f *testing.F) {
	for _, p := range []*ber.Packet{
		entryPacket("uid=a,"+suffix, map[string][]string{"uid": {"a"}, "mail": {"a@x", "b@x"}}, "uid", "mail"),
		entryPacket("cn=g,"+suffix, map[string][]string{"member": {strings.Repeat("uid=m,", 40)}, "cn": nil}, "cn", "member"),
		entryPacket("", nil),
	} {
		b := p.Bytes()
		_, body, _, _ := tlv(b)
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		c := &wireConn{names: map[string]string{}}
		e, err := c.decodeEntry(body)
		if err != nil {
			return
		}
		// Re-wrap as [APPLICATION 4] and decode generically.
		raw := append([]byte{0x64}, berLength(len(body))...)
		raw = append(raw, body...)
		p, perr := ber.DecodePacketErr(raw)
		if perr != nil {
			t.Fatalf("decodeEntry accepted what asn1-ber rejects (%v): %+v", perr, e)
		}
		if len(p.Children) < 2 || string(p.Children[0].Data.Bytes()) != e.DN {
			t.Fatalf("DN %q differs from asn1-ber's", e.DN)
		}
		attrs := p.Children[1].Children
		if len(attrs) != len(e.Attributes) {
			t.Fatalf("%d attributes, asn1-ber %d", len(e.Attributes), len(attrs))
		}
		for i, a := range attrs {
			if len(a.Children) < 2 || string(a.Children[0].Data.Bytes()) != e.Attributes[i].Name {
				t.Fatalf("attribute %d name %q differs", i, e.Attributes[i].Name)
			}
			vals := a.Children[1].Children
			if len(vals) != len(e.Attributes[i].Values) {
				t.Fatalf("attribute %d: %d values, asn1-ber %d", i, len(e.Attributes[i].Values), len(vals))
			}
			for j, v := range vals {
				if !bytes.Equal(v.Data.Bytes(), e.Attributes[i].ByteValues[j]) || string(v.Data.Bytes()) != e.Attributes[i].Values[j] {
					t.Fatalf("attribute %d value %d differs", i, j)
				}
			}
		}
	})
}

func berLength(n int) []byte {
	if n < 0x80 {
		return []byte{byte(n)}
	}
	var b []byte
	for x := n; x > 0; x >>= 8 {
		b = append([]byte{byte(x)}, b...)
	}
	return append([]byte{0x80 | byte(len(b))}, b...)
}

// TestWireConnRefusesEmptyPassword: a simple bind with a DN and an empty
// password is an unauthenticated bind (RFC 4513 5.1.2) that many servers
// accept as anonymous: the sync would then read what anonymous may see and
// take it as the directory. It is refused before anything is sent, as
// go-ldap's Bind does.
func TestWireConnRefusesEmptyPassword(t *testing.T) {
	ok := ber.Encode(ber.ClassApplication, ber.TypeConstructed, appBindResponse, nil, "bind")
	for _, ch := range searchDone(0, "").Children {
		ok.AppendChild(ch)
	}
	c := serveOnce(t, message(1, ok))
	if err := c.bind("cn=sync,dc=example", ""); err == nil {
		t.Fatal("bind with an empty password accepted")
	}
}
