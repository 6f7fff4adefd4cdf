package storetest

import (
	"strings"

	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// testSearchUsers: the admin search matches text in userName, e-mail and
// display name, firms by primary firm or firm profile, never deleted users,
// in userName order with paging.
func testSearchUsers(e *env) {
	t := e.t
	e.mustUpdate(func(tx store.Tx) error {
		for _, n := range []string{"3856", "4000", "5000"} {
			if err := tx.PutFirm(e.ctx, &directory.Firm{Number: n, Name: "F" + n, Type: directory.FirmLegalServicesProvider, Enabled: true}); err != nil {
				return err
			}
		}
		return nil
	})
	alice := e.createUser(directory.User{UserName: "alice", Email: "alice@smith.example", DisplayName: "Alice Smith", Active: true, FirmNumber: "3856"})
	bob := e.createUser(directory.User{UserName: "Bob", Email: "bob@smith.example", DisplayName: "Robert", Active: true, FirmNumber: "3856"})
	carol := e.createUser(directory.User{UserName: "carol", Email: "carol@jones.example", DisplayName: "Carol Jones", Active: true, FirmNumber: "4000"})
	dave := e.createUser(directory.User{UserName: "dave", Email: "dave@jones.example", DisplayName: "Dave", Active: true, FirmNumber: "4000"})
	gone := e.createUser(directory.User{UserName: "gone", Email: "gone@smith.example", Active: true, FirmNumber: "3856"})
	e.mustUpdate(func(tx store.Tx) error {
		// dave works for 4000 and, through a second profile, for 3856.
		if err := tx.PutFirmMembership(e.ctx, directory.FirmMembership{UserID: dave.ID, FirmNumber: "3856", Source: "cwa"}); err != nil {
			return err
		}
		return tx.DeleteUser(e.ctx, gone.ID)
	})
	_ = alice
	_ = bob
	_ = carol
	cases := []struct {
		q     store.UserSearch
		want  string
		total int64
	}{
		{store.UserSearch{Limit: -1}, "alice,Bob,carol,dave", 4},
		{store.UserSearch{Text: "SMITH", Limit: -1}, "alice,Bob", 2},     // e-mail and display name
		{store.UserSearch{Text: "rob", Limit: -1}, "Bob", 1},             // display name only
		{store.UserSearch{Text: "jones.ex", Limit: -1}, "carol,dave", 2}, // e-mail
		{store.UserSearch{Firms: []string{"3856"}, Limit: -1}, "alice,Bob,dave", 3},
		{store.UserSearch{Firms: []string{"4000"}, Limit: -1}, "carol,dave", 2},
		{store.UserSearch{Firms: []string{"3856", "4000"}, Limit: -1}, "alice,Bob,carol,dave", 4},
		{store.UserSearch{Firms: []string{"5000"}, Limit: -1}, "", 0},
		{store.UserSearch{Text: "DAV", Firms: []string{"3856"}, Limit: -1}, "dave", 1}, // via the profile
		{store.UserSearch{Firms: []string{"3856"}, Offset: 1, Limit: 1}, "Bob", 3},
		{store.UserSearch{Firms: []string{"3856"}, Limit: 0}, "", 3},
		{store.UserSearch{Text: "gone", Limit: -1}, "", 0}, // deleted users never
		{store.UserSearch{Text: "%", Limit: -1}, "", 0},    // LIKE wildcards are literal
	}
	for _, c := range cases {
		p, err := e.s.SearchUsers(e.ctx, c.q)
		if err != nil {
			t.Fatalf("%+v: %v", c.q, err)
		}
		var names []string
		for _, u := range p.Items {
			names = append(names, u.UserName)
		}
		if got := strings.Join(names, ","); got != c.want || p.Total != c.total {
			t.Errorf("SearchUsers(%+v) = %q (total %d), want %q (total %d)", c.q, got, p.Total, c.want, c.total)
		}
	}
}
