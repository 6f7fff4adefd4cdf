package ldapsync

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// openSource is an OpenLDAP source over replayed responses.
func openSource() config.LDAPSource {
	src := config.LDAPSource{Name: "ol", URL: "ldap://ol.example", UserBaseDNs: []string{"ou=people,dc=x"},
		GroupBaseDNs: []string{"ou=groups,dc=x"}, PageSize: 10}
	src.ApplyDefaults()
	return src
}

func olUser(uid, uuid, mail, ts string) recEntry {
	a := map[string][]string{"uid": {uid}, "entryUUID": {uuid}, "cn": {uid}, "sn": {uid}, "modifyTimestamp": {ts}}
	if mail != "" {
		a["mail"] = []string{mail}
	}
	if uid == "" {
		delete(a, "uid")
	}
	return recEntry{DN: "uid=" + uuid + ",ou=people,dc=x", Attrs: a}
}

func olGroup(cn, uuid, ts string, members ...string) recEntry {
	return recEntry{DN: "cn=" + cn + ",ou=groups,dc=x",
		Attrs: map[string][]string{"cn": {cn}, "entryUUID": {uuid}, "member": members, "modifyTimestamp": {ts}}}
}

func olConn(src config.LDAPSource, userFilter, groupFilter string, users, groups []recEntry) *replayConn {
	return &replayConn{reqs: []recReq{
		{Base: src.UserBaseDNs[0], Scope: 2, Filter: userFilter, Pages: [][]recEntry{users}},
		{Base: src.GroupBaseDNs[0], Scope: 2, Filter: groupFilter, Pages: [][]recEntry{groups}},
	}}
}

func groupMembers(t *testing.T, st testStore, name string) map[string]bool {
	t.Helper()
	ctx := context.Background()
	p, err := st.ListGroups(ctx, storeGroupByName(name))
	if err != nil || len(p.Items) != 1 {
		t.Fatalf("group %s: %v", name, err)
	}
	ids, err := st.ListGroupMembers(ctx, p.Items[0].ID, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, id := range ids {
		u, err := st.GetUser(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		out[u.UserName] = true
	}
	return out
}

// TestFailedEntryKeepsMemberships: a linked user whose entry cannot be
// applied this time (its new e-mail is another user's, or its userName is
// missing) is present in the source: its link stays, and so do its group
// memberships (removing them would remove its grants through reconcile).
func TestFailedEntryKeepsMemberships(t *testing.T) {
	st := openSQLite(t)
	src := openSource()
	ts := "20261101000000Z"
	a := olUser("alice", "aaaaaaaa-0000-0000-0000-000000000001", "alice@x", ts)
	b := olUser("bob", "bbbbbbbb-0000-0000-0000-000000000002", "bob@x", ts)
	c := olUser("carol", "cccccccc-0000-0000-0000-000000000003", "carol@x", ts)
	g := olGroup("staff", "99999999-0000-0000-0000-000000000009", ts, a.DN, b.DN, c.DN)
	run := func(users ...recEntry) *Result {
		t.Helper()
		conn := olConn(src, src.UserFilter, src.GroupFilter, users, []recEntry{g})
		res, err := New(src, st, Options{Dial: dialReplay(conn)}).Run(context.Background(), RunOptions{Full: true})
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		return res
	}
	run(a, b, c)
	if m := groupMembers(t, st, "staff"); len(m) != 3 {
		t.Fatalf("members after the first run: %v", m)
	}
	// bob's e-mail now collides with alice's; carol's uid is unreadable.
	b2 := olUser("bob", "bbbbbbbb-0000-0000-0000-000000000002", "alice@x", ts)
	c2 := olUser("", "cccccccc-0000-0000-0000-000000000003", "carol@x", ts)
	res := run(a, b2, c2)
	if res.Status != directory.RunOK || res.Counts["failed"] != 2 || res.Counts["gone"] != 0 {
		t.Fatalf("second run: %s %v", res.Status, res.Counts)
	}
	if m := groupMembers(t, st, "staff"); !m["bob"] || !m["carol"] || !m["alice"] {
		t.Fatalf("members after entries failed: %v (want alice, bob and carol)", m)
	}
}

// TestIncrementalUnreadableGroupRemovesNothing: an incremental run re-reads
// every group when one changed; a group entry read without its stable id
// is left out of the graph, so its parents would lose its members. That
// read is not complete: the run aborts and no membership is removed.
func TestIncrementalUnreadableGroupRemovesNothing(t *testing.T) {
	st := openSQLite(t)
	src := openSource()
	ts := "20261101000000Z"
	a := olUser("alice", "aaaaaaaa-0000-0000-0000-000000000001", "alice@x", ts)
	child := olGroup("team", "88888888-0000-0000-0000-000000000008", ts, a.DN)
	parent := olGroup("staff", "99999999-0000-0000-0000-000000000009", ts, child.DN)
	full := olConn(src, src.UserFilter, src.GroupFilter, []recEntry{a}, []recEntry{child, parent})
	if _, err := New(src, st, Options{Dial: dialReplay(full)}).Run(context.Background(), RunOptions{Full: true}); err != nil {
		t.Fatal(err)
	}
	if m := groupMembers(t, st, "staff"); !m["alice"] {
		t.Fatalf("staff after the full run: %v", m)
	}
	since := "(modifyTimestamp>=20261031235500Z)"
	badChild := olGroup("team", "", "20261101000100Z", a.DN)
	delete(badChild.Attrs, "entryUUID")
	parent2 := olGroup("staff", "99999999-0000-0000-0000-000000000009", "20261101000100Z", child.DN)
	inc := &replayConn{reqs: []recReq{
		{Base: src.UserBaseDNs[0], Scope: 2, Filter: "(&" + src.UserFilter + since + ")", Pages: [][]recEntry{{}}},
		{Base: src.GroupBaseDNs[0], Scope: 2, Filter: "(&" + src.GroupFilter + since + ")", Pages: [][]recEntry{{badChild, parent2}}},
		{Base: src.GroupBaseDNs[0], Scope: 2, Filter: src.GroupFilter, Pages: [][]recEntry{{badChild, parent2}}},
	}}
	before, _ := st.GetCursor(context.Background(), "ldap:ol")
	res, err := New(src, st, Options{Dial: dialReplay(inc)}).Run(context.Background(), RunOptions{})
	if res == nil || res.Mode != ModeIncremental {
		t.Fatalf("incremental: %+v %v", res, err)
	}
	if m := groupMembers(t, st, "staff"); !m["alice"] {
		t.Fatalf("staff lost its nested member through an unreadable child group: %v (run %s, err %v)", m, res.Status, err)
	}
	if err == nil {
		t.Fatal("incremental run with an unreadable group entry succeeded")
	}
	if after, _ := st.GetCursor(context.Background(), "ldap:ol"); after != before {
		t.Fatalf("cursor moved: %s -> %s", before, after)
	}
}

// TestHighWaterMarkNotPastReadStart: an entry modified while a long run is
// reading (after its own entry was read) must be re-read next time, so the
// modifyTimestamp cursor never passes the time the read began, even when
// an entry read later carries a later modifyTimestamp.
func TestHighWaterMarkNotPastReadStart(t *testing.T) {
	st := openSQLite(t)
	src := openSource()
	start := time.Now().UTC()
	late := start.Add(20 * time.Minute).Format(genTime) // modified 20 minutes into the run
	a := olUser("alice", "aaaaaaaa-0000-0000-0000-000000000001", "alice@x", start.Add(-time.Hour).Format(genTime))
	b := olUser("bob", "bbbbbbbb-0000-0000-0000-000000000002", "bob@x", late)
	conn := olConn(src, src.UserFilter, src.GroupFilter, []recEntry{a, b}, nil)
	if _, err := New(src, st, Options{Dial: dialReplay(conn)}).Run(context.Background(), RunOptions{Full: true}); err != nil {
		t.Fatal(err)
	}
	raw, _ := st.GetCursor(context.Background(), "ldap:ol")
	var c cursor
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		t.Fatal(err)
	}
	if c.ModifyTimestamp == "" || c.ModifyTimestamp > time.Now().UTC().Format(genTime) {
		t.Fatalf("cursor modifyTimestamp %s is past the read's start %s (an entry changed at %s would be missed)",
			c.ModifyTimestamp, start.Format(genTime), start.Add(time.Minute).Format(genTime))
	}
}

// TestRangeRetrievalGap: a follow-up range that does not start where the
// last one ended (values skipped) is an error, never a short member list.
func TestRangeRetrievalGap(t *testing.T) {
	m := newMapper(adSource())
	dn := "CN=Big,OU=Staff,DC=corp,DC=example"
	e := recEntry{DN: dn, Attrs: map[string][]string{"member;range=0-2": {"CN=a", "CN=b", "CN=c"}}}.entry()
	for _, tc := range []struct{ name, attr string }{
		{"gap", "member;range=6-*"},
		{"restart", "member;range=0-*"},
	} {
		c := &replayConn{reqs: []recReq{{Base: dn, Scope: 0, Filter: "(objectClass=*)", Attr: "member;range=3-*",
			Pages: [][]recEntry{{{DN: dn, Attrs: map[string][]string{tc.attr: {"CN=x"}}}}}}}}
		if ms, err := m.members(c, e); err == nil {
			t.Errorf("%s: follow-up %s accepted: %d members %v", tc.name, tc.attr, len(ms), ms)
		}
	}
	// The first range must start at 0.
	e = recEntry{DN: dn, Attrs: map[string][]string{"member;range=5-*": {"CN=a"}}}.entry()
	if ms, err := m.members(&replayConn{}, e); err == nil {
		t.Errorf("first range 5-* accepted: %v", ms)
	}
}

// TestGroupShrinkGuardWithoutCursor: without a last full sync to compare
// with (its cursor unreadable or lost), the group read is compared with the
// source's live groups in the store, as the user read is with the live
// links: an empty group read then removes nothing.
func TestGroupShrinkGuardWithoutCursor(t *testing.T) {
	st := openSQLite(t)
	src := openSource()
	ts := "20261101000000Z"
	a := olUser("alice", "aaaaaaaa-0000-0000-0000-000000000001", "alice@x", ts)
	g1 := olGroup("staff", "99999999-0000-0000-0000-000000000009", ts, a.DN)
	g2 := olGroup("team", "88888888-0000-0000-0000-000000000008", ts, a.DN)
	ctx := context.Background()
	if _, err := New(src, st, Options{Dial: dialReplay(olConn(src, src.UserFilter, src.GroupFilter, []recEntry{a}, []recEntry{g1, g2}))}).
		Run(ctx, RunOptions{Full: true}); err != nil {
		t.Fatal(err)
	}
	if err := st.Update(ctx, audit.Meta{Actor: "test"}, func(ctx context.Context, tx store.Tx) error {
		return tx.SetCursor(ctx, "ldap:ol", "not json")
	}); err != nil {
		t.Fatal(err)
	}
	res, err := New(src, st, Options{Dial: dialReplay(olConn(src, src.UserFilter, src.GroupFilter, []recEntry{a}, nil))}).
		Run(ctx, RunOptions{Full: true})
	if !errors.Is(err, ErrUnsafe) || res.Counts["groups_gone"] != 0 {
		t.Fatalf("empty group read without a cursor: err %v, counts %v", err, res.Counts)
	}
	if m := groupMembers(t, st, "staff"); !m["alice"] {
		t.Fatalf("staff after an empty group read: %v", m)
	}
}

// TestADUnreadableUserAccountControl: an AD user entry without a readable
// userAccountControl (every user object has one: an ACL or a read fault)
// says nothing about whether the account is disabled; it is a failed entry,
// not an active user.
func TestADUnreadableUserAccountControl(t *testing.T) {
	m := newMapper(adSource())
	guid := []string{"ao2NC1xfOU6aU2srXYwaAQ=="}
	for _, uac := range [][]string{nil, {"not a number"}} {
		e := recEntry{DN: "CN=x,OU=Staff,DC=corp,DC=example", Attrs: map[string][]string{"sAMAccountName": {"x"}},
			Binary: map[string][]string{"objectGUID": guid}}
		if uac != nil {
			e.Attrs["userAccountControl"] = uac
		}
		if u := m.user(e.entry()); u.Err == "" {
			t.Errorf("userAccountControl %q: entry taken as active=%v", uac, u.F.Active)
		}
	}
}
