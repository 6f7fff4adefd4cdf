package storetest

import (
	"bytes"
	"slices"
	"strings"

	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// testSyncSnapshots: a snapshot is stored and replaced per source without
// an audit event; the point reads a snapshot is patched with answer by key
// or id.
func testSyncSnapshots(e *env) {
	t := e.t
	_, err := e.s.GetSyncSnapshot(e.ctx, "ldap:corp")
	wantErr(t, err, store.ErrNotFound)
	n := len(e.events())
	put := func(source string, s store.SyncSnapshot) error {
		return e.update(func(tx store.Tx) error { return tx.PutSyncSnapshot(e.ctx, source, s) })
	}
	if err := put("ldap:corp", store.SyncSnapshot{AuditSeq: 7, Data: []byte{1, 0, 2}}); err != nil {
		t.Fatal(err)
	}
	if err := put("ldap:corp", store.SyncSnapshot{AuditSeq: 9, Data: []byte{1, 0, 3, 0}}); err != nil {
		t.Fatal(err)
	}
	if err := put("ldap:other", store.SyncSnapshot{AuditSeq: 1, Data: []byte{}}); err != nil {
		t.Fatal(err)
	}
	if got := len(e.events()); got != n {
		t.Fatalf("PutSyncSnapshot recorded %d audit events, want none", got-n)
	}
	if s, err := e.s.GetSyncSnapshot(e.ctx, "ldap:corp"); err != nil || s.AuditSeq != 9 || !bytes.Equal(s.Data, []byte{1, 0, 3, 0}) {
		t.Fatalf("GetSyncSnapshot = %+v, %v; want the replacement", s, err)
	}
	if s, err := e.s.GetSyncSnapshot(e.ctx, "ldap:other"); err != nil || s.AuditSeq != 1 || len(s.Data) != 0 {
		t.Fatalf("GetSyncSnapshot(ldap:other) = %+v, %v", s, err)
	}
	for _, bad := range []struct {
		source string
		s      store.SyncSnapshot
	}{{"", store.SyncSnapshot{Data: []byte{1}}}, {"ldap:corp", store.SyncSnapshot{AuditSeq: -1, Data: []byte{1}}}, {"ldap:corp", store.SyncSnapshot{}}} {
		if err := put(bad.source, bad.s); err == nil {
			t.Errorf("PutSyncSnapshot(%q, %+v) succeeded", bad.source, bad.s)
		}
	}

	u := e.createUser(user("alice", "alice@x.org"))
	v := e.createUser(user("bob", ""))
	e.mustUpdate(func(tx store.Tx) error {
		for _, l := range []directory.SourceLink{
			{UserID: u.ID, Source: "ldap:corp", Key: "k2", DN: "uid=alice"},
			{UserID: v.ID, Source: "ldap:corp", Key: "k1", DN: "uid=bob"},
			{UserID: u.ID, Source: "scim:entra", Key: "ext-a"},
		} {
			if err := tx.PutLink(e.ctx, l); err != nil {
				return err
			}
		}
		if err := tx.MarkLinkGone(e.ctx, "ldap:corp", "k1"); err != nil {
			return err
		}
		return tx.PutFingerprints(e.ctx, "ldap:corp", []store.Fingerprint{
			{Key: "k2", UserID: u.ID, Digest: "d2", UserVersion: u.Version},
			{Key: "k1", UserID: v.ID, Digest: "d1", UserVersion: v.Version},
		})
	})
	ls, err := e.s.ListLinksOfUsers(e.ctx, "ldap:corp", []string{v.ID, u.ID, "no-such-user"})
	slices.SortFunc(ls, func(a, b directory.SourceLink) int { return strings.Compare(a.Key, b.Key) }) // no promised order
	if err != nil || len(ls) != 2 || ls[0].Key != "k1" || ls[0].GoneAt == nil || ls[1].Key != "k2" || ls[1].UserID != u.ID || ls[1].DN != "uid=alice" {
		t.Fatalf("ListLinksOfUsers = %+v, %v; want k1 (gone) and k2 of ldap:corp only", ls, err)
	}
	e.mustUpdate(func(tx store.Tx) error { return tx.DeleteUser(e.ctx, v.ID) })
	vs, err := e.s.ListUserVersionsByID(e.ctx, []string{v.ID, "no-such-user", u.ID})
	slices.SortFunc(vs, func(a, b store.UserVersion) int { return strings.Compare(a.ID, b.ID) })
	want := []store.UserVersion{{ID: u.ID, Version: u.Version}, {ID: v.ID, Version: e.getUser(v.ID).Version, Deleted: true}}
	slices.SortFunc(want, func(a, b store.UserVersion) int { return strings.Compare(a.ID, b.ID) })
	if err != nil || !slices.Equal(vs, want) {
		t.Fatalf("ListUserVersionsByID = %+v, %v; want %+v", vs, err, want)
	}
	fps, err := e.s.ListFingerprintsByKey(e.ctx, "ldap:corp", []string{"k2", "k9"})
	if err != nil || len(fps) != 1 || fps[0] != (store.Fingerprint{Key: "k2", UserID: u.ID, Digest: "d2", UserVersion: u.Version}) {
		t.Fatalf("ListFingerprintsByKey = %+v, %v", fps, err)
	}
	if fps, err := e.s.ListFingerprintsByKey(e.ctx, "ldap:other", []string{"k2"}); err != nil || len(fps) != 0 {
		t.Fatalf("ListFingerprintsByKey(ldap:other) = %+v, %v", fps, err)
	}
}

// testAuditUsersAfter: every write to a user or one of its links records a
// user event naming it — what a sync snapshot relies on to know what moved
// after it (ldapsync/snapshot.go); ListAuditUsersAfter lists them once
// each, and says when there were more than asked for.
func testAuditUsersAfter(e *env) {
	t := e.t
	u := e.createUser(user("alice", "alice@x.org"))
	v := e.createUser(user("bob", ""))
	w := e.createUser(user("carol", ""))
	e.mustUpdate(func(tx store.Tx) error {
		return tx.PutLink(e.ctx, directory.SourceLink{UserID: u.ID, Source: "ldap:corp", Key: "k1", DN: "uid=a"})
	})
	after := func(what string, fn func(tx store.Tx) error, want ...string) {
		t.Helper()
		seq, err := e.s.LastAuditSeq(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		e.mustUpdate(fn)
		ids, complete, err := e.s.ListAuditUsersAfter(e.ctx, seq, 100)
		slices.Sort(ids)
		slices.Sort(want)
		if err != nil || !complete || !slices.Equal(ids, want) {
			t.Errorf("%s: ListAuditUsersAfter = %v (complete %v), %v; want %v", what, ids, complete, err, want)
		}
	}
	after("DN change", func(tx store.Tx) error {
		return tx.PutLink(e.ctx, directory.SourceLink{UserID: u.ID, Source: "ldap:corp", Key: "k1", DN: "uid=a2"})
	}, u.ID)
	after("link moved to another user", func(tx store.Tx) error {
		return tx.PutLink(e.ctx, directory.SourceLink{UserID: v.ID, Source: "ldap:corp", Key: "k1", DN: "uid=a2"})
	}, v.ID)
	after("link gone", func(tx store.Tx) error { return tx.MarkLinkGone(e.ctx, "ldap:corp", "k1") }, v.ID)
	after("link back", func(tx store.Tx) error {
		return tx.PutLink(e.ctx, directory.SourceLink{UserID: v.ID, Source: "ldap:corp", Key: "k1", DN: "uid=a2"})
	}, v.ID)
	after("link deleted", func(tx store.Tx) error { return tx.DeleteLink(e.ctx, "ldap:corp", "k1") }, v.ID)
	// (users read before Update: a store on one connection cannot be read
	// through inside it)
	wu := e.getUser(w.ID)
	wu.DisplayName = "Carol C"
	after("user updated", func(tx store.Tx) error { return tx.UpdateUser(e.ctx, &wu, 0) }, w.ID)
	y := user("dave", "")
	y.ID = "dave-id"
	x := e.getUser(u.ID)
	x.DisplayName = "Alice A"
	after("users upserted", func(tx store.Tx) error {
		_, _, err := tx.UpsertUsers(e.ctx, []*directory.User{&x, &y})
		return err
	}, u.ID, "dave-id")
	after("user deleted", func(tx store.Tx) error { return tx.DeleteUser(e.ctx, w.ID) }, w.ID)
	after("no user touched", func(tx store.Tx) error { return tx.SetCursor(e.ctx, "ldap:corp", "c1") })

	ids, complete, err := e.s.ListAuditUsersAfter(e.ctx, 0, 2)
	if err != nil || complete || len(ids) == 0 || len(ids) > 2 {
		t.Errorf("ListAuditUsersAfter(0, 2) = %v, complete %v, %v; want at most 2 ids and incomplete", ids, complete, err)
	}
	if _, _, err := e.s.ListAuditUsersAfter(e.ctx, 0, 0); err == nil {
		t.Error("ListAuditUsersAfter with limit 0 succeeded")
	}
	if ids, complete, err := e.s.ListAuditUsersAfter(e.ctx, 1<<40, 10); err != nil || !complete || len(ids) != 0 {
		t.Errorf("after the last event: %v, %v, %v", ids, complete, err)
	}
}

func (e *env) getUser(id string) directory.User {
	e.t.Helper()
	u, err := e.s.GetUser(e.ctx, id)
	if err != nil {
		e.t.Fatalf("get user %s: %v", id, err)
	}
	return u
}
