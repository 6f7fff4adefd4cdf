package storetest

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// testBulkReads checks the BulkReader methods: users paged in id order
// (deleted ones included), and the range reads returning exactly the rows of
// the users whose id is in the range, nobody else's.
func testBulkReads(e *env) {
	t := e.t
	var users []directory.User
	for i := range 5 {
		users = append(users, e.createUser(user(fmt.Sprintf("bulk%d", i), fmt.Sprintf("bulk%d@example.org", i))))
	}
	sort.Slice(users, func(i, j int) bool { return users[i].ID < users[j].ID })
	ids := make([]string, len(users))
	for i, u := range users {
		ids[i] = u.ID
	}
	var g1, g2, g3 directory.Group
	e.mustUpdate(func(tx store.Tx) error {
		for _, g := range []*directory.Group{&g1, &g2, &g3} {
			*g = directory.Group{Source: "s", DisplayName: fmt.Sprintf("bulk-g-%p", g)}
			if err := tx.CreateGroup(e.ctx, g); err != nil {
				return err
			}
		}
		if err := tx.AddGroupChild(e.ctx, g1.ID, g2.ID); err != nil {
			return err
		}
		if err := tx.AddGroupChild(e.ctx, g2.ID, g3.ID); err != nil {
			return err
		}
		for i, id := range ids {
			if err := tx.AddMembers(e.ctx, g1.ID, []string{id}); err != nil {
				return err
			}
			if i%2 == 0 {
				if err := tx.AddMembers(e.ctx, g2.ID, []string{id}); err != nil {
					return err
				}
			}
			if err := tx.PutFirmMembership(e.ctx, directory.FirmMembership{UserID: id, FirmNumber: fmt.Sprintf("F%d", i%2), Source: "s"}); err != nil {
				return err
			}
			if err := tx.PutLink(e.ctx, directory.SourceLink{UserID: id, Source: "s", Key: "k" + id}); err != nil {
				return err
			}
			l := directory.LegacyLogin{Login: fmt.Sprintf("L%d", i), FirmNumber: "F0", UserID: id, OfficeCodes: []string{"0Q731M"}}
			if err := tx.PutLegacyLogin(e.ctx, &l); err != nil {
				return err
			}
			for _, role := range []string{"a", "b"} {
				g := directory.Grant{UserID: id, FirmNumber: "F0", Service: "svc", Role: role, AllOffices: true,
					Provenance: []directory.Provenance{{Kind: directory.ProvRule, Ref: "r"}}}
				if err := tx.PutGrant(e.ctx, &g); err != nil {
					return err
				}
			}
		}
		// an unlinked legacy login belongs to nobody's range
		unlinked := directory.LegacyLogin{Login: "NOBODY", FirmNumber: "F0"}
		if err := tx.PutLegacyLogin(e.ctx, &unlinked); err != nil {
			return err
		}
		// a second user in firm F1 by primary firm only
		u := users[0]
		u.FirmNumber = "F1"
		if err := tx.UpdateUser(e.ctx, &u, 0); err != nil {
			return err
		}
		if err := tx.MarkLinkGone(e.ctx, "s", "k"+ids[1]); err != nil {
			return err
		}
		return tx.DeleteUser(e.ctx, ids[4])
	})

	// users after, paged, deleted included
	var got []string
	after := ""
	for {
		page, err := e.s.ListUsersAfter(e.ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range page {
			got = append(got, u.ID)
			if len(u.Emails) != 1 || u.Emails[0].Value != u.Email || !u.Emails[0].Primary {
				t.Errorf("ListUsersAfter: user %s e-mails %+v, want its one primary e-mail %s", u.UserName, u.Emails, u.Email)
			}
		}
		if len(page) < 2 {
			break
		}
		after = page[len(page)-1].ID
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("ListUsersAfter paged %v, want %v (deleted users included, id order)", got, ids)
	}
	if page, err := e.s.ListUsersAfter(e.ctx, ids[3], 10); err != nil || len(page) != 1 || page[0].ID != ids[4] || page[0].DeletedAt == nil {
		t.Fatalf("ListUsersAfter(last but one) = %+v, %v", page, err)
	}

	rg := store.UserRange{From: ids[1], To: ids[3]}
	in := func(id string) bool { return id >= rg.From && id <= rg.To }
	userIDs := func(n int, at func(int) string) []string {
		var out []string
		for i := range n {
			out = append(out, at(i))
		}
		return out
	}
	want3 := ids[1:4]
	wantEach := func(what string, got []string, per int) {
		t.Helper()
		var want []string
		for _, id := range want3 {
			for range per {
				want = append(want, id)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: user ids %v, want %v", what, got, want)
		}
	}

	ms, err := e.s.ListFirmMembershipsInRange(e.ctx, rg)
	if err != nil {
		t.Fatal(err)
	}
	wantEach("firm memberships", userIDs(len(ms), func(i int) string { return ms[i].UserID }), 1)
	for _, m := range ms {
		if m.FirmNumber == "" || m.Source != "s" {
			t.Errorf("membership %+v", m)
		}
	}

	gm, err := e.s.ListGroupMembershipsInRange(e.ctx, rg)
	if err != nil {
		t.Fatal(err)
	}
	var wantGM []store.GroupMembership
	for i := 1; i <= 3; i++ {
		row := []store.GroupMembership{{GroupID: g1.ID, UserID: ids[i]}}
		if i%2 == 0 {
			row = append(row, store.GroupMembership{GroupID: g2.ID, UserID: ids[i]})
		}
		sort.Slice(row, func(a, b int) bool { return row[a].GroupID < row[b].GroupID })
		wantGM = append(wantGM, row...)
	}
	if !slices.Equal(gm, wantGM) {
		t.Errorf("group memberships %+v, want %+v", gm, wantGM)
	}

	ls, err := e.s.ListLinksInRange(e.ctx, rg)
	if err != nil {
		t.Fatal(err)
	}
	wantEach("links", userIDs(len(ls), func(i int) string { return ls[i].UserID }), 1)
	for _, l := range ls {
		if (l.GoneAt != nil) != (l.UserID == ids[1]) || l.Source != "s" || l.Key != "k"+l.UserID {
			t.Errorf("link %+v (only %s's is gone)", l, ids[1])
		}
	}

	ll, err := e.s.ListLegacyLoginsInRange(e.ctx, rg)
	if err != nil {
		t.Fatal(err)
	}
	wantEach("legacy logins", userIDs(len(ll), func(i int) string { return ll[i].UserID }), 1)
	for _, l := range ll {
		if !in(l.UserID) || len(l.OfficeCodes) != 1 {
			t.Errorf("legacy login %+v", l)
		}
	}

	gs, err := e.s.ListGrantsInRange(e.ctx, rg)
	if err != nil {
		t.Fatal(err)
	}
	wantEach("grants", userIDs(len(gs), func(i int) string { return gs[i].UserID }), 2)
	for i, g := range gs {
		if g.Role != []string{"a", "b"}[i%2] || !g.AllOffices || len(g.Provenance) != 1 {
			t.Errorf("grant %d = %+v (ordered by role within a user)", i, g)
		}
	}
	if one, err := e.s.ListGrantsInRange(e.ctx, store.UserRange{From: ids[2], To: ids[2]}); err != nil || len(one) != 2 || one[0].UserID != ids[2] {
		t.Errorf("single-user range = %+v, %v", one, err)
	}
	if n, err := e.s.CountGrants(e.ctx); err != nil || n != 10 {
		t.Errorf("CountGrants = %d, %v, want 10", n, err)
	}
	for _, bad := range []store.UserRange{{}, {From: ids[3], To: ids[1]}, {From: ids[1]}} {
		if _, err := e.s.ListGrantsInRange(e.ctx, bad); err == nil || !strings.Contains(err.Error(), "bad user range") {
			t.Errorf("range %+v accepted: %v", bad, err)
		}
	}

	edges, err := e.s.ListGroupEdges(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantEdges := []store.GroupEdge{{ParentID: g1.ID, ChildID: g2.ID}, {ParentID: g2.ID, ChildID: g3.ID}}
	sort.Slice(wantEdges, func(a, b int) bool { return wantEdges[a].ParentID < wantEdges[b].ParentID })
	if !slices.Equal(edges, wantEdges) {
		t.Errorf("edges %+v, want %+v", edges, wantEdges)
	}

	f1, err := e.s.ListFirmUserIDs(e.ctx, "F1")
	if err != nil {
		t.Fatal(err)
	}
	var wantF1 []string
	for i, id := range ids {
		if i%2 == 1 || i == 0 { // membership in F1, or F1 as primary firm
			wantF1 = append(wantF1, id)
		}
	}
	if !slices.Equal(f1, wantF1) {
		t.Errorf("ListFirmUserIDs(F1) = %v, want %v", f1, wantF1)
	}
	if none, err := e.s.ListFirmUserIDs(e.ctx, "NOPE"); err != nil || len(none) != 0 {
		t.Errorf("ListFirmUserIDs(NOPE) = %v, %v", none, err)
	}

	evs := e.events()
	if seq, err := e.s.LastAuditSeq(e.ctx); err != nil || seq != evs[len(evs)-1].Seq {
		t.Errorf("LastAuditSeq = %d, %v, want %d", seq, err, evs[len(evs)-1].Seq)
	}

	// Grants with and without office lists and with different provenances,
	// one after the other: a range read returns each exactly as ListGrants
	// does (no office list or provenance carried over from the row before,
	// no shared slices).
	e.mustUpdate(func(tx store.Tx) error {
		for i, id := range ids[:3] {
			for _, g := range []directory.Grant{
				{UserID: id, FirmNumber: "F0", Service: "svc", Role: "c", Offices: []string{fmt.Sprintf("O%d", i), "OX"},
					Provenance: []directory.Provenance{{Kind: directory.ProvManual, Ref: "ops", Detail: fmt.Sprint(i)}}},
				{UserID: id, FirmNumber: "F0", Service: "svc", Role: "d", AllOffices: true,
					Provenance: []directory.Provenance{{Kind: directory.ProvRule, Ref: "r2"}, {Kind: directory.ProvManual, Ref: "ops"}}},
			} {
				if err := tx.PutGrant(e.ctx, &g); err != nil {
					return err
				}
			}
		}
		return nil
	})
	all, err := e.s.ListGrantsInRange(e.ctx, store.UserRange{From: ids[0], To: ids[len(ids)-1]})
	if err != nil {
		t.Fatal(err)
	}
	var want []directory.Grant
	for _, id := range ids {
		one, err := e.s.ListGrants(e.ctx, store.GrantQuery{UserID: id})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, one...)
	}
	if len(all) != len(want) {
		t.Fatalf("range read %d grants, ListGrants %d", len(all), len(want))
	}
	for i := range all {
		if !reflect.DeepEqual(all[i], want[i]) {
			t.Errorf("range grant %d = %+v, ListGrants %+v", i, all[i], want[i])
		}
	}
	if len(all) > 2 && all[2].Offices != nil {
		all[2].Offices[0] = "CHANGED" // must not show in another grant
		for i, g := range all {
			if i != 2 && slices.Contains(g.Offices, "CHANGED") {
				t.Errorf("grant %d shares grant 2's office list", i)
			}
		}
	}
}

// testSourceMemberships: ListSourceMemberships streams the memberships of
// one source's live groups only, by group then user.
func testSourceMemberships(e *env) {
	t := e.t
	a, b := e.createUser(user("sm-a", "")), e.createUser(user("sm-b", ""))
	var g1, g2, other, gone directory.Group
	e.mustUpdate(func(tx store.Tx) error {
		for _, g := range []*directory.Group{&g1, &g2, &other, &gone} {
			src := "ldap:corp"
			if g == &other {
				src = "scim:entra"
			}
			*g = directory.Group{Source: src, DisplayName: fmt.Sprintf("sm-%p", g)}
			if err := tx.CreateGroup(e.ctx, g); err != nil {
				return err
			}
			if err := tx.AddMembers(e.ctx, g.ID, []string{a.ID, b.ID}); err != nil {
				return err
			}
		}
		return tx.DeleteGroup(e.ctx, gone.ID)
	})
	var got []store.GroupMembership
	if err := e.s.ListSourceMemberships(e.ctx, "ldap:corp", func(m store.GroupMembership) error {
		got = append(got, m)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var want []store.GroupMembership
	for _, g := range []string{g1.ID, g2.ID} {
		for _, u := range []string{a.ID, b.ID} {
			want = append(want, store.GroupMembership{GroupID: g, UserID: u})
		}
	}
	slices.SortFunc(want, func(x, y store.GroupMembership) int {
		return strings.Compare(x.GroupID+"\x00"+x.UserID, y.GroupID+"\x00"+y.UserID)
	})
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ListSourceMemberships = %+v, want %+v (live groups of ldap:corp only, by group then user)", got, want)
	}
}
