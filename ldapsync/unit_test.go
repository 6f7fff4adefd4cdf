package ldapsync

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

func TestGUIDString(t *testing.T) {
	tests := []struct {
		in   []byte
		want string
		err  bool
	}{
		// Bytes as AD stores {6f2a3c4d-1111-4a5b-8c9d-0e1f2a3b4c5d}: first three fields little-endian.
		{in: []byte{0x4d, 0x3c, 0x2a, 0x6f, 0x11, 0x11, 0x5b, 0x4a, 0x8c, 0x9d, 0x0e, 0x1f, 0x2a, 0x3b, 0x4c, 0x5d},
			want: "6f2a3c4d-1111-4a5b-8c9d-0e1f2a3b4c5d"},
		{in: make([]byte, 16), want: "00000000-0000-0000-0000-000000000000"},
		{in: []byte{1, 2, 3}, err: true},
		{in: nil, err: true},
	}
	for _, tt := range tests {
		got, err := GUIDString(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("GUIDString(%x) = %q, %v; want %q (err %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestNormDN(t *testing.T) {
	tests := []struct{ a, b string }{
		{"uid=Bob,ou=People,dc=Example,dc=org", "uid=bob,ou=people,dc=example,dc=org"},
		{"CN=Ann Lee, OU=Staff, DC=corp", "cn=ann lee,ou=staff,dc=corp"},
		{`CN=Lee\, Ann,OU=Staff`, `cn=lee\, ann,ou=staff`},
	}
	for _, tt := range tests {
		if normDN(tt.a) != normDN(tt.b) {
			t.Errorf("normDN(%q) = %q != normDN(%q) = %q", tt.a, normDN(tt.a), tt.b, normDN(tt.b))
		}
	}
	if normDN("cn=a,dc=x") == normDN("cn=b,dc=x") {
		t.Error("different DNs normalise equal")
	}
}

func TestGraphResolve(t *testing.T) {
	tests := []struct {
		name       string
		users      [][]int32
		children   [][]int
		want       [][]int32
		wantCycles [][]int
	}{
		{name: "flat", users: [][]int32{{1, 0}, {2}}, children: [][]int{nil, nil},
			want: [][]int32{{0, 1}, {2}}},
		{name: "chain", users: [][]int32{{0}, {1}, {2}}, children: [][]int{{1}, {2}, nil},
			want: [][]int32{{0, 1, 2}, {1, 2}, {2}}},
		{name: "diamond shares members once", users: [][]int32{{0}, {1}, {1, 2}, {3}}, children: [][]int{{1, 2}, {3}, {3}, nil},
			want: [][]int32{{0, 1, 2, 3}, {1, 3}, {1, 2, 3}, {3}}},
		{name: "cycle", users: [][]int32{{0}, {1}, {2}}, children: [][]int{{1}, {2}, {1}},
			want: [][]int32{{0, 1, 2}, {1, 2}, {1, 2}}, wantCycles: [][]int{{1, 2}}},
		{name: "self loop", users: [][]int32{{5}}, children: [][]int{{0}},
			want: [][]int32{{5}}, wantCycles: [][]int{{0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eff, cycles, comp := graph{users: tt.users, children: tt.children}.resolve()
			for i := range tt.want {
				if !slices.Equal(eff[i], tt.want[i]) {
					t.Errorf("group %d: %v, want %v", i, eff[i], tt.want[i])
				}
			}
			if len(cycles) != len(tt.wantCycles) {
				t.Fatalf("cycles %v, want %v", cycles, tt.wantCycles)
			}
			for i := range cycles {
				if !slices.Equal(cycles[i], tt.wantCycles[i]) {
					t.Errorf("cycle %v, want %v", cycles[i], tt.wantCycles[i])
				}
				for _, v := range cycles[i] {
					if comp[v] != comp[cycles[i][0]] {
						t.Errorf("cycle members in different components: %v", comp)
					}
				}
			}
		})
	}
}

func TestGraphDeepChainNoStackOverflow(t *testing.T) {
	const n = 200000
	g := graph{users: make([][]int32, n), children: make([][]int, n)}
	for i := 0; i < n-1; i++ {
		g.children[i] = []int{i + 1}
	}
	g.users[n-1] = []int32{7}
	eff, cycles, _ := g.resolve()
	if len(cycles) != 0 || !slices.Equal(eff[0], []int32{7}) {
		t.Fatalf("deep chain: cycles %d, eff[0] %v", len(cycles), eff[0])
	}
}

func TestPagedSearchTruncation(t *testing.T) {
	c := loadRecorded(t, "full")
	var n int
	collect := func(es []*ldap.Entry) error { n += len(es); return nil }
	base, filter := "OU=Staff,DC=corp,DC=example", "(&(objectCategory=person)(objectClass=user))"
	if err := pagedSearch(context.Background(), c, base, filter, nil, 2, 0, collect); err != nil || n != 5 {
		t.Fatalf("complete paging: %d entries, %v", n, err)
	}
	// A server that drops the paging control after the first page has not
	// said it is done: truncated, not complete.
	c.noCookie, n = true, 0
	err := pagedSearch(context.Background(), c, base, filter, nil, 2, 0, collect)
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("dropped paging control: %v", err)
	}
	// A cancelled context stops between pages.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := pagedSearch(ctx, loadRecorded(t, "full"), base, filter, nil, 2, 0, collect); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestRangeRetrieval(t *testing.T) {
	c := loadRecorded(t, "full")
	m := newMapper(adSource())
	res, err := c.Search(ldap.NewSearchRequest("OU=Staff,DC=corp,DC=example", ldap.ScopeWholeSubtree, 0, 0, 0, false,
		"(objectClass=group)", nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	g, err := m.group(c, res.Entries[0])
	if err != nil {
		t.Fatal(err)
	}
	if g.Name != "Case Team" || len(g.Members) != 5 || !strings.HasPrefix(g.Members[3], "CN=Raj Patel") {
		t.Fatalf("range retrieval: %+v", g)
	}
	if g.Key != "9c1d2e3f-aaaa-4bbb-8ccc-000000000001" {
		t.Fatalf("objectGUID key %q", g.Key)
	}
	// A range whose follow-up is missing is an error, never a short member list.
	broken := &replayConn{reqs: c.reqs[:len(c.reqs)-1]}
	if _, err := m.group(broken, res.Entries[0]); err == nil {
		t.Fatal("missing range follow-up accepted")
	}
}

func TestMapperAD(t *testing.T) {
	m := newMapper(adSource())
	c := loadRecorded(t, "full")
	res, err := c.Search(ldap.NewSearchRequest("OU=Staff,DC=corp,DC=example", ldap.ScopeWholeSubtree, 0, 0, 0, false,
		"(&(objectCategory=person)(objectClass=user))", nil, []ldap.Control{ldap.NewControlPaging(10)}))
	if err != nil {
		t.Fatal(err)
	}
	u := m.user(res.Entries[0])
	if u.Err != "" || u.Key != "0b8d8e6a-5f5c-4e39-9a53-6b2b5d8c1a01" || u.F.UserName != "jsmith" || !u.F.Active || u.Change.usn != 4000 {
		t.Fatalf("jsmith = %+v", u)
	}
	var nu directory.User
	m.apply(&nu, u.F)
	if nu.Email != "john.smith@corp.example" || len(nu.Emails) != 1 || !nu.Emails[0].Primary {
		t.Fatalf("applied = %+v", nu)
	}
	if changed := m.apply(&nu, u.F); len(changed) != 0 {
		t.Fatalf("second apply changed %v", changed)
	}
	if m.fieldsOf(nu).digest() != u.F.digest() {
		t.Fatal("digest of applied user differs from the entry's")
	}
}

// The AD code paths end to end over recorded responses and a real SQLite store.
func TestADFullIncrementalAndDCChange(t *testing.T) {
	st := openSQLite(t)
	now := time.Date(2026, 11, 23, 1, 0, 0, 0, time.UTC)
	run := func(phase string, ro RunOptions) (*Result, *replayConn) {
		t.Helper()
		c := loadRecorded(t, phase)
		s := New(adSource(), st, Options{Now: func() time.Time { return now }, Dial: dialReplay(c)})
		res, err := s.Run(context.Background(), ro)
		if err != nil {
			t.Fatalf("%s: %v\nrequests:\n%s", phase, err, strings.Join(c.log, "\n"))
		}
		return res, c
	}
	ctx := context.Background()
	res, _ := run("full", RunOptions{})
	if res.Mode != ModeFull || res.Counts["created"] != 5 || res.Counts["groups_created"] != 2 {
		t.Fatalf("full: %s %v", res.Mode, res.Counts)
	}
	old, err := st.GetUserByUserName(ctx, "oldacct")
	if err != nil || old.Active {
		t.Fatalf("disabled account (userAccountControl 514) active=%v: %v", old.Active, err)
	}
	js, _ := st.GetUserByUserName(ctx, "jsmith")
	if u, err := st.FindUserByLink(ctx, "ldap:corp", "0b8d8e6a-5f5c-4e39-9a53-6b2b5d8c1a01"); err != nil || u.ID != js.ID {
		t.Fatalf("objectGUID link: %v %v", u.ID, err)
	}
	sup, err := st.ListGroups(ctx, storeGroupByName("Supervisors"))
	if err != nil || len(sup.Items) != 1 {
		t.Fatalf("Supervisors: %v", err)
	}
	n, _ := st.CountGroupMembers(ctx, sup.Items[0].ID)
	if n != 5 { // mwong + Case Team (5 via range retrieval, incl. mwong) = 5 distinct
		t.Fatalf("Supervisors effective members = %d, want 5", n)
	}
	raw, _ := st.GetCursor(ctx, "ldap:corp")
	if !strings.Contains(raw, `"usn":5000`) || !strings.Contains(raw, "6f2a3c4d-1111-4a5b-8c9d-0e1f2a3b4c5d") {
		t.Fatalf("cursor %s", raw)
	}

	// Incremental: uSNChanged above the stored USN; a rename keeps the user.
	res, c := run("incremental", RunOptions{})
	if res.Mode != ModeIncremental || res.Counts["updated"] != 1 {
		t.Fatalf("incremental: %s %v\n%s", res.Mode, res.Counts, strings.Join(c.log, "\n"))
	}
	js2, _ := st.GetUserByUserName(ctx, "jsmith")
	if js2.ID != js.ID || js2.Email != "john.smith-jones@corp.example" {
		t.Fatalf("renamed jsmith = %+v", js2)
	}
	raw, _ = st.GetCursor(ctx, "ldap:corp")
	if !strings.Contains(raw, `"usn":5100`) {
		t.Fatalf("cursor after incremental %s", raw)
	}

	// Another domain controller (different invocationId): full sync, not a silent gap.
	res, _ = run("dc-change", RunOptions{})
	if res.Mode != ModeFull || !strings.Contains(res.Reason, "domain controller changed") {
		t.Fatalf("dc change: %s (%s)", res.Mode, res.Reason)
	}
	raw, _ = st.GetCursor(ctx, "ldap:corp")
	if !strings.Contains(raw, `"usn":900`) || !strings.Contains(raw, "7e3b4d5e-2222-4b6c-9d0e-1f2a3b4c5d6e") {
		t.Fatalf("cursor after dc change %s", raw)
	}
}

func TestADFailedRunKeepsCursor(t *testing.T) {
	st := openSQLite(t)
	c := loadRecorded(t, "full")
	s := New(adSource(), st, Options{Dial: dialReplay(c)})
	if _, err := s.Run(context.Background(), RunOptions{}); err != nil {
		t.Fatal(err)
	}
	before, _ := st.GetCursor(context.Background(), "ldap:corp")
	// The incremental recording without its group search: the run fails.
	inc := loadRecorded(t, "incremental")
	inc.reqs = inc.reqs[:3]
	s = New(adSource(), st, Options{Dial: dialReplay(inc)})
	res, err := s.Run(context.Background(), RunOptions{})
	if err == nil || res.Status != directory.RunFailed {
		t.Fatalf("run without group response: %v", err)
	}
	after, _ := st.GetCursor(context.Background(), "ldap:corp")
	if after != before {
		t.Fatalf("cursor moved on a failed run: %s -> %s", before, after)
	}
}

func storeGroupByName(name string) store.GroupQuery {
	return store.GroupQuery{Filter: store.Cmp{Field: "displayName", Op: store.OpEq, Value: name}, Limit: 10}
}

// TestGroupPageSize: group reads page by groupPageSize (a group entry
// carries its whole member list), user reads by pageSize.
func TestGroupPageSize(t *testing.T) {
	st := openSQLite(t)
	c := loadRecorded(t, "full")
	src := adSource()
	src.PageSize, src.GroupPageSize = 3, 1
	s := New(src, st, Options{Dial: dialReplay(c)})
	if _, err := s.Run(context.Background(), RunOptions{}); err != nil {
		t.Fatal(err)
	}
	users, groups := 0, 0
	for _, p := range c.pageSizes {
		switch {
		case strings.HasPrefix(p, src.GroupFilter+" "):
			groups++
			if !strings.HasSuffix(p, " 1") {
				t.Errorf("group search paged as %q, want size 1", p)
			}
		case strings.HasPrefix(p, src.UserFilter+" "):
			users++
			if !strings.HasSuffix(p, " 3") {
				t.Errorf("user search paged as %q, want size 3", p)
			}
		}
	}
	if users == 0 || groups == 0 {
		t.Fatalf("paged searches: %q", c.pageSizes)
	}
}

// TestFullRunDropsUserLookups: once a full run has read its users, the
// per-user lookups only the user phase needs are released before the group
// read (the run's memory peak), and no userName index is built for
// member/uniqueMember DNs; the run's result is unchanged.
func TestFullRunDropsUserLookups(t *testing.T) {
	st := openSQLite(t)
	src := adSource()
	var checked bool
	hook := func(r *run) {
		checked = true
		if r.users != nil || r.byEmail != nil || r.byName != nil || r.pending != nil || r.linkedUser != nil {
			t.Errorf("user lookups kept into the group read: users %d, byEmail %d, byName %d, pending %d, linkedUser %d",
				len(r.users), len(r.byEmail), len(r.byName), len(r.pending), len(r.linkedUser))
		}
		if len(r.nameIdx) != 0 {
			t.Errorf("userName index of %d entries built for member attribute %q", len(r.nameIdx), src.MemberAttribute)
		}
		if len(r.dnIdx) == 0 || len(r.links) == 0 || len(r.seen) == 0 {
			t.Errorf("the DN index, links and seen keys are needed later: %d, %d, %d", len(r.dnIdx), len(r.links), len(r.seen))
		}
	}
	for _, phase := range []string{"full", "full"} { // an empty store, then one with every user
		s := New(src, st, Options{Dial: dialReplay(loadRecorded(t, phase)), beforeGroups: hook})
		res, err := s.Run(context.Background(), RunOptions{Full: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != directory.RunOK || res.Counts["users_seen"] == 0 || res.Counts["groups_seen"] == 0 {
			t.Fatalf("run %s: counts %v", res.Status, res.Counts)
		}
	}
	if !checked {
		t.Fatal("hook not called")
	}
}
