package ldapsync

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/internal/testenv"
)

// BenchmarkLDAPRead splits the full sync's target (≤ 2× the ldapsearch
// floor) into its parts: on the directory of BenchmarkLDAPSync (same sizes,
// same env), it times in one run the floor (the C ldapsearch dump of
// BenchmarkLDAPSync to /dev/null), the same search (same filter, attributes
// and page size, entries dropped) through go-ldap's connection and through
// the sync's (wireConn), and the reads a full sync makes (users, then groups, with dirsyncd's attributes and page sizes,
// each entry mapped as the syncer maps it), without any store. What is left
// of the 2× once the read alone is paid is what the store may take.
func BenchmarkLDAPRead(b *testing.B) {
	nUsers := envInt("DIRSYNCD_BENCH_LDAP_USERS", 2000)
	nGroups := envInt("DIRSYNCD_BENCH_LDAP_GROUPS", max(nUsers/50, 2))
	s := testenv.Slapd(b, testenv.SlapdOptions{LDIF: genDirectory(nUsers, nGroups, threeGroups(nGroups))})
	src := config.LDAPSource{Name: "bench", URL: s.URL(), BindDN: s.BindDN(), BindPassword: config.NewSecret(s.Password()),
		UserBaseDNs: []string{"ou=people," + suffix}, GroupBaseDNs: []string{"ou=groups," + suffix}}
	src.ApplyDefaults()
	ctx := context.Background()
	conn, err := Dial(ctx, src) // the sync's connection (wireConn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	gl, err := ldap.DialURL(src.URL) // go-ldap's own, for comparison
	if err != nil {
		b.Fatal(err)
	}
	defer gl.Close()
	if err := gl.Bind(src.BindDN, src.BindPassword.Value()); err != nil {
		b.Fatal(err)
	}
	m := newMapper(src)
	want := nUsers + nGroups

	// Each part runs three times in turn; the best of each is reported, so
	// that a moment of load elsewhere on the machine does not decide it.
	best := map[string]time.Duration{}
	timeIt := func(name string, fn func() int) {
		t0 := time.Now()
		n := fn()
		d := time.Since(t0)
		if n != want {
			b.Fatalf("%s read %d entries, want %d", name, n, want)
		}
		if cur, ok := best[name]; !ok || d < cur {
			best[name] = d
		}
	}
	for range b.N * 3 {
		timeIt("floor", func() int { runFloor(b, s); return want })
		for name, c := range map[string]Conn{"goldap": gl, "wire": conn} {
			timeIt(name, func() int {
				n := 0
				err := pagedSearch(ctx, c, suffix, floorFilter, floorAttrs, 1000, 0,
					func(entries []*ldap.Entry) error { n += len(entries); return nil })
				if err != nil {
					b.Fatal(err)
				}
				return n
			})
		}
		timeIt("syncread", func() int {
			n := 0
			for _, base := range src.UserBaseDNs {
				err := pagedSearch(ctx, conn, base, src.UserFilter, m.userAttrs(), src.PageSize, 0, func(entries []*ldap.Entry) error {
					for _, e := range entries {
						if u := m.user(e); u.Err != "" {
							return fmt.Errorf("user %s: %s", e.DN, u.Err)
						}
						n++
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			for _, base := range src.GroupBaseDNs {
				err := pagedSearch(ctx, conn, base, src.GroupFilter, m.groupAttrs(), src.GroupPage(), 0, func(entries []*ldap.Entry) error {
					for _, e := range entries {
						if _, err := m.group(conn, e); err != nil {
							return err
						}
						n++
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			return n
		})
	}
	floor := best["floor"].Seconds()
	b.ReportMetric(floor, "floor-s")
	for _, name := range []string{"goldap", "wire", "syncread"} {
		b.ReportMetric(best[name].Seconds(), name+"-s")
		b.ReportMetric(best[name].Seconds()/floor, name+"-x-floor")
	}
	b.Logf("%d users, %d groups: floor %v; the floor's search through go-ldap %v (%.2f×), through wireConn %v (%.2f×); the sync's reads (wireConn) %v (%.2f×)",
		nUsers, nGroups, best["floor"], best["goldap"], best["goldap"].Seconds()/floor, best["wire"], best["wire"].Seconds()/floor,
		best["syncread"], best["syncread"].Seconds()/floor)
}
