package storetest

import (
	"errors"
	"slices"

	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// testFingerprints: fingerprints are stored and listed by key, writing
// them records no audit event, bad input is refused whole; every user
// write moves the version ListUserVersions reports, which is what makes a
// fingerprint stale.
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
	list := func(source string) []store.Fingerprint {
		t.Helper()
		var out []store.Fingerprint
		if err := e.s.ListFingerprints(e.ctx, source, func(f store.Fingerprint) error {
			out = append(out, f)
			return nil
		}); err != nil {
			t.Fatalf("ListFingerprints: %v", err)
		}
		return out
	}
	want := []store.Fingerprint{
		{Key: "k1", UserID: v.ID, Digest: "d-bob", UserVersion: v.Version},
		{Key: "k2", UserID: u.ID, Digest: "d-alice", UserVersion: u.Version},
		{Key: "k3", UserID: "no-such-user", Digest: "d-x", UserVersion: 1},
	}
	if got := list("ldap:corp"); !slices.Equal(got, want) {
		t.Fatalf("ListFingerprints = %+v, want %+v (by key)", got, want)
	}
	if p := list("ldap:other"); len(p) != 0 {
		t.Fatalf("another source's fingerprints = %+v", p)
	}
	stop := errors.New("stop")
	calls := 0
	if err := e.s.ListFingerprints(e.ctx, "ldap:corp", func(store.Fingerprint) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("an error from fn: %v after %d calls, want it returned after 1", err, calls)
	}
	// Replacing by key.
	e.mustUpdate(func(tx store.Tx) error {
		return tx.PutFingerprints(e.ctx, "ldap:corp", []store.Fingerprint{{Key: "k2", UserID: u.ID, Digest: "d-alice2", UserVersion: u.Version}})
	})
	if got := list("ldap:corp"); len(got) != 3 || got[1].Digest != "d-alice2" {
		t.Fatalf("replaced: %+v", got)
	}

	versions := func() map[string]store.UserVersion {
		t.Helper()
		out := map[string]store.UserVersion{}
		if err := e.s.ListUserVersions(e.ctx, func(x store.UserVersion) error {
			out[x.ID] = x
			return nil
		}); err != nil {
			t.Fatalf("ListUserVersions: %v", err)
		}
		return out
	}
	vs := versions()
	if len(vs) != 2 || vs[u.ID].Version != u.Version || vs[v.ID].Version != v.Version || vs[u.ID].Deleted {
		t.Fatalf("ListUserVersions = %+v", vs)
	}
	// Any write to the user (here a field no sync manages) moves it.
	u.Location = "Leeds"
	e.mustUpdate(func(tx store.Tx) error { return tx.UpdateUser(e.ctx, &u, 0) })
	if x := versions()[u.ID]; x.Version != u.Version || x.Version == want[1].UserVersion {
		t.Fatalf("after the user's update: %+v, want version %d (was %d)", x, u.Version, want[1].UserVersion)
	}
	e.mustUpdate(func(tx store.Tx) error { return tx.DeleteUser(e.ctx, v.ID) })
	if x := versions()[v.ID]; !x.Deleted || x.Version == want[0].UserVersion {
		t.Fatalf("deleted user: %+v, want deleted at a new version", x)
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
	if f := list("ldap:corp"); len(f) != 3 {
		t.Fatalf("a refused call wrote %+v", f)
	}

	// A link marked gone, or deleted, takes its fingerprint with it (same
	// source and key only).
	e.mustUpdate(func(tx store.Tx) error {
		for _, k := range []string{"k1", "k2"} {
			if err := tx.PutLink(e.ctx, directory.SourceLink{UserID: u.ID, Source: "ldap:corp", Key: k, LastSeenAt: e.clock.Now()}); err != nil {
				return err
			}
		}
		return tx.PutLink(e.ctx, directory.SourceLink{UserID: u.ID, Source: "ldap:other", Key: "k3", LastSeenAt: e.clock.Now()})
	})
	e.mustUpdate(func(tx store.Tx) error { return tx.MarkLinkGone(e.ctx, "ldap:corp", "k2") })
	if got := list("ldap:corp"); len(got) != 2 || got[0].Key != "k1" || got[1].Key != "k3" {
		t.Fatalf("after k2's link went: %+v, want k1 and k3", got)
	}
	e.mustUpdate(func(tx store.Tx) error { return tx.DeleteLink(e.ctx, "ldap:other", "k3") })
	if got := list("ldap:corp"); len(got) != 2 {
		t.Fatalf("another source's link deleted took ldap:corp's fingerprint: %+v", got)
	}
	e.mustUpdate(func(tx store.Tx) error { return tx.DeleteLink(e.ctx, "ldap:corp", "k1") })
	if got := list("ldap:corp"); len(got) != 1 || got[0].Key != "k3" {
		t.Fatalf("after k1's link was deleted: %+v, want k3 only", got)
	}
}

// testGroupFingerprints: a group fingerprint is fresh only while its group
// stays at the version it names, which every member change bumps.
func testGroupFingerprints(e *env) {
	t := e.t
	u := e.createUser(user("gf-a", ""))
	var g directory.Group
	e.mustUpdate(func(tx store.Tx) error {
		g = directory.Group{Source: "ldap:corp", SourceKey: "gk", DisplayName: "gf"}
		return tx.CreateGroup(e.ctx, &g)
	})
	n := len(e.events())
	put := func(v int64) {
		t.Helper()
		e.mustUpdate(func(tx store.Tx) error {
			return tx.PutGroupFingerprints(e.ctx, "ldap:corp", []store.GroupFingerprint{
				{Key: "gk", GroupID: g.ID, Digest: "d", GroupVersion: v},
				{Key: "gone", GroupID: "no-such-group", Digest: "d", GroupVersion: 1},
			})
		})
	}
	get := func() map[string]store.GroupFingerprint {
		t.Helper()
		fs, err := e.s.ListGroupFingerprints(e.ctx, "ldap:corp")
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]store.GroupFingerprint{}
		for _, f := range fs {
			out[f.Key] = f
		}
		return out
	}
	cur := func() int64 {
		t.Helper()
		x, err := e.s.GetGroup(e.ctx, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		return x.Version
	}
	put(cur())
	if len(e.events()) != n {
		t.Fatal("PutGroupFingerprints recorded audit events")
	}
	fs := get()
	if f := fs["gk"]; !f.Fresh() || f.GroupID != g.ID || f.Digest != "d" {
		t.Fatalf("fresh group fingerprint = %+v", f)
	}
	if f := fs["gone"]; f.Fresh() || len(fs) != 2 {
		t.Fatalf("fingerprints %+v: the missing group's must not be fresh", fs)
	}
	for _, change := range []func(tx store.Tx) error{
		func(tx store.Tx) error { return tx.AddMembers(e.ctx, g.ID, []string{u.ID}) },
		func(tx store.Tx) error { return tx.RemoveMembers(e.ctx, g.ID, []string{u.ID}) },
	} {
		put(cur())
		e.mustUpdate(change)
		if f := get()["gk"]; f.Fresh() {
			t.Fatalf("after a member change the fingerprint is still fresh: %+v", f)
		}
	}
	put(cur())
	e.mustUpdate(func(tx store.Tx) error { return tx.DeleteGroup(e.ctx, g.ID) })
	if f := get()["gk"]; f.Fresh() || !f.Deleted {
		t.Fatalf("deleted group's fingerprint = %+v", f)
	}
	if err := e.update(func(tx store.Tx) error {
		return tx.PutGroupFingerprints(e.ctx, "ldap:corp", []store.GroupFingerprint{{Key: "x", GroupID: g.ID, Digest: "d"}})
	}); err == nil {
		t.Fatal("a group fingerprint without a version was accepted")
	}
}
