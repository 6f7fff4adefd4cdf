package storetest

import (
	"github.com/dirsyncd/dirsyncd/store"
)

// testFingerprints: a fingerprint is fresh only while its user stays at the
// version it names; writing them records no audit event; bad input is
// refused whole.
func testFingerprints(e *env) {
	t := e.t
	u := e.createUser(user("alice", "alice@x.org"))
	v := e.createUser(user("bob", ""))
	n := len(e.events())
	e.mustUpdate(func(tx store.Tx) error {
		return tx.PutFingerprints(e.ctx, "ldap:corp", []store.Fingerprint{
			{Key: "k2", UserID: u.ID, Digest: "d-alice", UserVersion: u.Version},
			{Key: "k1", UserID: v.ID, Digest: "d-bob", UserVersion: v.Version},
			{Key: "k3", UserID: "no-such-user", Digest: "d-x", UserVersion: 1},
		})
	})
	if got := len(e.events()); got != n {
		t.Fatalf("PutFingerprints recorded %d audit events, want none", got-n)
	}
	list := func(source, after string, limit int) []store.Fingerprint {
		t.Helper()
		fs, err := e.s.ListFingerprints(e.ctx, source, after, limit)
		if err != nil {
			t.Fatalf("ListFingerprints: %v", err)
		}
		return fs
	}
	fs := list("ldap:corp", "", 0)
	if len(fs) != 3 || fs[0].Key != "k1" || fs[1].Key != "k2" || fs[2].Key != "k3" {
		t.Fatalf("ListFingerprints order = %+v", fs)
	}
	if !fs[0].Fresh() || !fs[1].Fresh() || fs[1].Digest != "d-alice" || fs[1].UserID != u.ID || fs[1].CurrentVersion != u.Version {
		t.Fatalf("fresh fingerprints = %+v", fs[:2])
	}
	if fs[2].Fresh() || fs[2].CurrentVersion != 0 {
		t.Fatalf("fingerprint of a missing user = %+v, want not fresh", fs[2])
	}
	if p := list("ldap:corp", "k1", 1); len(p) != 1 || p[0].Key != "k2" {
		t.Fatalf("page after k1 = %+v", p)
	}
	if p := list("ldap:other", "", 0); len(p) != 0 {
		t.Fatalf("another source's fingerprints = %+v", p)
	}

	// Any write to the user (here a field no sync manages) makes it stale.
	u.Location = "Leeds"
	e.mustUpdate(func(tx store.Tx) error { return tx.UpdateUser(e.ctx, &u, 0) })
	if f := list("ldap:corp", "k1", 1); len(f) != 1 || f[0].Fresh() || f[0].CurrentVersion != u.Version {
		t.Fatalf("after the user's update: %+v, want stale at version %d", f, u.Version)
	}
	// Replacing it makes it fresh again.
	e.mustUpdate(func(tx store.Tx) error {
		return tx.PutFingerprints(e.ctx, "ldap:corp", []store.Fingerprint{{Key: "k2", UserID: u.ID, Digest: "d-alice2", UserVersion: u.Version}})
	})
	if f := list("ldap:corp", "k1", 1); len(f) != 1 || !f[0].Fresh() || f[0].Digest != "d-alice2" {
		t.Fatalf("replaced: %+v", f)
	}
	// A deleted user's fingerprint is never fresh.
	e.mustUpdate(func(tx store.Tx) error { return tx.DeleteUser(e.ctx, v.ID) })
	if f := list("ldap:corp", "", 1); len(f) != 1 || f[0].Fresh() || !f[0].Deleted {
		t.Fatalf("deleted user's fingerprint: %+v", f)
	}

	// Bad input: nothing of the call is written.
	for _, bad := range [][]store.Fingerprint{
		{{Key: "k9", UserID: u.ID, Digest: "d", UserVersion: 1}, {Key: "", UserID: u.ID, Digest: "d", UserVersion: 1}},
		{{Key: "k9", UserID: u.ID, Digest: "d", UserVersion: 1}, {Key: "k9", UserID: u.ID, Digest: "e", UserVersion: 1}},
		{{Key: "k9", UserID: u.ID, Digest: "d", UserVersion: 0}},
	} {
		if err := e.update(func(tx store.Tx) error { return tx.PutFingerprints(e.ctx, "ldap:corp", bad) }); err == nil {
			t.Fatalf("PutFingerprints(%+v) succeeded", bad)
		}
	}
	if f := list("ldap:corp", "k3", 0); len(f) != 0 {
		t.Fatalf("a refused call wrote %+v", f)
	}
}
