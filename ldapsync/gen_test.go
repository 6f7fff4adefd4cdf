package ldapsync

import (
	"fmt"
	"strings"
	"time"
)

// genDirectory writes an LDIF with nUsers users under ou=people and nGroups
// groupOfNames under ou=groups. Each user is in memberOf(i) groups; every
// tenth group also contains the previous group (nesting). Entries carry old
// modifyTimestamps, one second apart (groups first, then users), as a
// directory built over time has, so incremental runs read only what
// changes later (plus the overlap window).
func genDirectory(nUsers, nGroups int, memberOf func(i int) []int) string {
	var b strings.Builder
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	stamp := func(n int) string {
		t := start.Add(time.Duration(n) * time.Second).Format(genTime)
		return "createTimestamp: " + t + "\nmodifyTimestamp: " + t + "\n"
	}
	ts := stamp(0)
	b.WriteString("dn: ou=people," + suffix + "\nobjectClass: organizationalUnit\nou: people\n" + ts + "\n")
	b.WriteString("dn: ou=groups," + suffix + "\nobjectClass: organizationalUnit\nou: groups\n" + ts + "\n")
	members := make([][]int, nGroups)
	for i := 0; i < nUsers; i++ {
		fmt.Fprintf(&b, "dn: uid=u%06d,ou=people,%s\nobjectClass: inetOrgPerson\nuid: u%06d\ncn: User %d\nsn: Surname%d\ngivenName: Given%d\nmail: u%06d@firm.example\n%s\n",
			i, suffix, i, i, i, i, i, stamp(nGroups+1+i))
		for _, g := range memberOf(i) {
			members[g] = append(members[g], i)
		}
	}
	for g := 0; g < nGroups; g++ {
		fmt.Fprintf(&b, "dn: cn=g%05d,ou=groups,%s\nobjectClass: groupOfNames\ncn: g%05d\n", g, suffix, g)
		if len(members[g]) == 0 && !(g%10 == 9 && g > 0) {
			fmt.Fprintf(&b, "member: cn=g%05d,ou=groups,%s\n", g, suffix) // groupOfNames needs a member
		}
		for _, u := range members[g] {
			fmt.Fprintf(&b, "member: uid=u%06d,ou=people,%s\n", u, suffix)
		}
		if g%10 == 9 {
			fmt.Fprintf(&b, "member: cn=g%05d,ou=groups,%s\n", g-1, suffix)
		}
		b.WriteString(stamp(1+g) + "\n")
	}
	return b.String()
}

// threeGroups spreads users over three distinct groups each.
func threeGroups(nGroups int) func(int) []int {
	return func(i int) []int {
		a, b, c := i%nGroups, (i/nGroups+i*7+3)%nGroups, (i*13+5)%nGroups
		out := []int{a}
		if b != a {
			out = append(out, b)
		}
		if c != a && c != b {
			out = append(out, c)
		}
		return out
	}
}
