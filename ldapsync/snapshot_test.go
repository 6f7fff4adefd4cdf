package ldapsync

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/internal/testenv"
	"github.com/dirsyncd/dirsyncd/store"
)

func TestSnapshotEncodingRoundTrip(t *testing.T) {
	in := []*linkInfo{
		{key: "k1", userID: "u1", dn: "uid=a,dc=x", fresh: true, fp: digest{1, 2, 3}, fpVersion: 7},
		{key: "k2", userID: "u2", dn: "", gone: true},
		{key: "k3", userID: "u3", dn: "uid=é,dc=x"},
		{key: strings.Repeat("k", 300), userID: "u4", dn: "d", fresh: true, fp: digest{9}, fpVersion: 1 << 40},
	}
	b := encodeSnapshot(in)
	out, err := decodeSnapshot(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("decoded %d links, want %d", len(out), len(in))
	}
	for i := range in {
		if out[i] != *in[i] {
			t.Errorf("link %d: got %+v, want %+v", i, out[i], *in[i])
		}
	}
	empty, err := decodeSnapshot(encodeSnapshot(nil))
	if err != nil || len(empty) != 0 {
		t.Fatalf("empty snapshot: %v, %d links", err, len(empty))
	}
}

// Every damaged snapshot is refused (the run then scans), never read as
// fewer links.
func TestSnapshotDecodeRefusesDamage(t *testing.T) {
	good := encodeSnapshot([]*linkInfo{
		{key: "k1", userID: "u1", dn: "uid=a", fresh: true, fp: digest{1}, fpVersion: 3},
		{key: "k2", userID: "u2", dn: "uid=b"},
	})
	for n := range len(good) {
		if _, err := decodeSnapshot(good[:n]); !errors.Is(err, errSnapshot) {
			t.Errorf("truncated to %d of %d bytes: err %v, want errSnapshot", n, len(good), err)
		}
	}
	bad := map[string][]byte{
		"other format":   append([]byte{snapshotFormat + 1}, good[1:]...),
		"trailing bytes": append(bytes.Clone(good), 0),
		"unknown flags":  func() []byte { b := bytes.Clone(good); b[2] = 0x80 | snapFresh; return b }(),
		"empty key":      encodeSnapshot([]*linkInfo{{userID: "u1"}}),
		"zero version":   encodeSnapshot([]*linkInfo{{key: "k", userID: "u", fresh: true}}),
		"huge count":     {snapshotFormat, 0xff, 0xff, 0xff, 0xff, 0x0f},
	}
	for name, b := range bad {
		if _, err := decodeSnapshot(b); !errors.Is(err, errSnapshot) {
			t.Errorf("%s: err %v, want errSnapshot", name, err)
		}
	}
}

// scanCounter counts the prefetch's scans.
type scanCounter struct {
	testStore
	links, fps, versions atomic.Int64
}

func (c *scanCounter) ScanLinks(ctx context.Context, source string, fn func(directory.SourceLink) error) error {
	c.links.Add(1)
	return c.testStore.ScanLinks(ctx, source, fn)
}

func (c *scanCounter) ListFingerprints(ctx context.Context, source string, fn func(store.Fingerprint) error) error {
	c.fps.Add(1)
	return c.testStore.ListFingerprints(ctx, source, fn)
}

func (c *scanCounter) ListUserVersions(ctx context.Context, fn func(store.UserVersion) error) error {
	c.versions.Add(1)
	return c.testStore.ListUserVersions(ctx, fn)
}

func (c *scanCounter) scans() int64 {
	n := c.links.Load() + c.fps.Load() + c.versions.Load()
	c.links.Store(0)
	c.fps.Store(0)
	c.versions.Store(0)
	return n
}

func (c *scanCounter) snapshot(t *testing.T) store.SyncSnapshot {
	t.Helper()
	s, err := c.GetSyncSnapshot(context.Background(), "ldap:corp")
	if err != nil {
		t.Fatalf("sync snapshot: %v", err)
	}
	return s
}

// TestSnapshotReplacesScans: after a full sync the next one reads the
// stored snapshot instead of scanning links, fingerprints and versions;
// an unchanged directory then writes no new snapshot either.
func TestSnapshotReplacesScans(t *testing.T) {
	sc := &scanCounter{testStore: openSQLite(t)}
	e := newEnv(t, testenv.SlapdOptions{}, sc)
	if res := e.mustRun(RunOptions{Full: true}); res.Counts["created"] != 5 {
		t.Fatalf("first full sync: %v", res.Counts)
	}
	// The prefetch's links and fingerprints (no versions without a
	// fingerprint); the five created users then patch the snapshot.
	if n := sc.scans(); n != 2 {
		t.Fatalf("first full sync: %d scans, want 2", n)
	}
	s1 := sc.snapshot(t)
	links, err := decodeSnapshot(s1.Data)
	if err != nil {
		t.Fatal(err)
	}
	fresh := 0
	for _, l := range links {
		if l.fresh && !l.gone {
			fresh++
		}
	}
	if len(links) != 5 || fresh != 5 {
		t.Fatalf("snapshot after the first full sync: %d links, %d fresh, want 5 and 5", len(links), fresh)
	}
	res := e.mustRun(RunOptions{Full: true})
	if n := sc.scans(); n != 0 {
		t.Fatalf("unchanged directory: %d scans, want 0 (the snapshot)", n)
	}
	if res.Counts["unchanged"] != 5 || e.domainEvents(res.RunID) != 0 {
		t.Fatalf("unchanged directory: counts %v, %d domain events", res.Counts, e.domainEvents(res.RunID))
	}
	if s2 := sc.snapshot(t); s2.AuditSeq != s1.AuditSeq || !bytes.Equal(s2.Data, s1.Data) {
		t.Fatalf("an unchanged directory rewrote the snapshot (seq %d → %d)", s1.AuditSeq, s2.AuditSeq)
	}
}

// TestSnapshotSeesChangesMadeElsewhere: what other writers changed after
// the snapshot was taken — a user's field, a link marked gone, a link
// removed, a user deleted — is seen by the next full sync as without a
// snapshot (with a snapshot taken on trust each of these would be missed).
func TestSnapshotSeesChangesMadeElsewhere(t *testing.T) {
	ctx := context.Background()
	sc := &scanCounter{testStore: openSQLite(t)}
	e := newEnv(t, testenv.SlapdOptions{}, sc)
	e.mustRun(RunOptions{Full: true})
	sc.scans()
	other := audit.Meta{Actor: "scim:entra"}
	update := func(fn func(ctx context.Context, tx store.Tx) error) {
		t.Helper()
		if err := sc.Update(ctx, other, fn); err != nil {
			t.Fatal(err)
		}
	}
	users := func() int {
		t.Helper()
		p, err := sc.ListUsers(ctx, store.UserQuery{Limit: 100, IncludeDeleted: true})
		if err != nil {
			t.Fatal(err)
		}
		return len(p.Items)
	}

	alice := e.user("alice")
	alice.Email, alice.Emails = "alice@elsewhere.example", nil
	update(func(ctx context.Context, tx store.Tx) error { return tx.UpdateUser(ctx, &alice, 0) })
	bob, carol := e.user("bob"), e.user("carol")
	bobKey, carolKey := e.link(bob.ID).Key, e.link(carol.ID).Key
	update(func(ctx context.Context, tx store.Tx) error { return tx.MarkLinkGone(ctx, "ldap:corp", bobKey) })
	update(func(ctx context.Context, tx store.Tx) error { return tx.DeleteLink(ctx, "ldap:corp", carolKey) })
	dave := e.user("dave")
	update(func(ctx context.Context, tx store.Tx) error { return tx.DeleteUser(ctx, dave.ID) })

	res := e.mustRun(RunOptions{Full: true})
	if n := sc.scans(); n != 0 {
		t.Fatalf("%d scans, want 0: four changed users patch the snapshot", n)
	}
	if got := e.user("alice").Email; got != "alice@firm.example" {
		t.Errorf("alice's e-mail = %q: the directory's value was not restored", got)
	}
	if l := e.link(bob.ID); l.GoneAt != nil || l.Key != bobKey {
		t.Errorf("bob's link %+v: not live again", l)
	}
	if l := e.link(carol.ID); l.Key != carolKey {
		t.Errorf("carol's link %+v: not put back", l)
	}
	if n := users(); n != 5 {
		t.Errorf("%d users, want 5: an entry whose link was removed must find its user again, not make a new one", n)
	}
	if its := e.items(res.RunID, "failed"); len(its) != 1 || !strings.Contains(its[0].Reason, "is deleted in dirsyncd") {
		t.Errorf("deleted dave: failed items %+v", its)
	}

	// The stored snapshot now has what this run saw and wrote: the next run
	// reads no user but the deleted dave.
	rc := &readCounter{testStore: sc}
	e.st = rc
	res = e.mustRun(RunOptions{Full: true})
	if g, l := rc.getUser.Load(), rc.listUsers.Load(); g != 1 || l != 0 {
		t.Fatalf("after the patched snapshot: %d GetUser and %d ListUsers calls, want 1 (dave) and 0", g, l)
	}
	if res.Counts["unchanged"] != 4 || e.domainEvents(res.RunID) != 0 {
		t.Fatalf("after the patched snapshot: counts %v, %d domain events", res.Counts, e.domainEvents(res.RunID))
	}
}

// TestSnapshotFallsBackToScans: a snapshot that cannot be brought up to date
// — ahead of the audit log (a restored database), unreadable, or with more
// changed users than snapshotPatchMax — is not used: the run scans, syncs
// as usual and stores a good one.
func TestSnapshotFallsBackToScans(t *testing.T) {
	ctx := context.Background()
	sc := &scanCounter{testStore: openSQLite(t)}
	e := newEnv(t, testenv.SlapdOptions{}, sc)
	e.mustRun(RunOptions{Full: true})
	good := sc.snapshot(t)
	put := func(s store.SyncSnapshot) {
		t.Helper()
		if err := sc.Update(ctx, audit.Meta{Actor: "test"}, func(ctx context.Context, tx store.Tx) error {
			return tx.PutSyncSnapshot(ctx, "ldap:corp", s)
		}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, want int64) {
		t.Helper()
		sc.scans()
		res := e.mustRun(RunOptions{Full: true})
		if n := sc.scans(); n != want {
			t.Fatalf("%s: %d scans, want %d", what, n, want)
		}
		if res.Counts["unchanged"] != 5 || e.domainEvents(res.RunID) != 0 {
			t.Fatalf("%s: counts %v, %d domain events", what, res.Counts, e.domainEvents(res.RunID))
		}
		last, err := sc.LastAuditSeq(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s := sc.snapshot(t)
		if _, err := decodeSnapshot(s.Data); err != nil || s.AuditSeq > last {
			t.Fatalf("%s: stored snapshot at seq %d (audit log at %d), decodes: %v", what, s.AuditSeq, last, err)
		}
		e.mustRun(RunOptions{Full: true})
		if n := sc.scans(); n != 0 {
			t.Fatalf("%s: the run after it made %d scans, want 0", what, n)
		}
	}
	last, err := sc.LastAuditSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	put(store.SyncSnapshot{AuditSeq: last + 100, Data: good.Data})
	check("snapshot ahead of the audit log", 3)
	put(store.SyncSnapshot{AuditSeq: good.AuditSeq, Data: []byte{snapshotFormat, 9}})
	check("unreadable snapshot", 3)

	saved := snapshotPatchMax
	snapshotPatchMax = 1
	t.Cleanup(func() { snapshotPatchMax = saved })
	for _, name := range []string{"alice", "bob"} {
		u := e.user(name)
		u.ExternalID = "ext-" + name
		if err := sc.Update(ctx, audit.Meta{Actor: "scim:entra"}, func(ctx context.Context, tx store.Tx) error { return tx.UpdateUser(ctx, &u, 0) }); err != nil {
			t.Fatal(err)
		}
	}
	// The prefetch scans; the run renews both users' fingerprints, again
	// more than one, so the snapshot is rebuilt by the scans too.
	check("two changed users, one allowed", 6)
}

// TestSnapshotNotWrittenByDryOrIncrementalRuns: only a successful full run
// stores a snapshot.
func TestSnapshotNotWrittenByDryOrIncrementalRuns(t *testing.T) {
	sc := &scanCounter{testStore: openSQLite(t)}
	e := newEnv(t, testenv.SlapdOptions{}, sc)
	e.mustRun(RunOptions{Full: true, DryRun: true})
	if _, err := sc.GetSyncSnapshot(context.Background(), "ldap:corp"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after a dry run: %v, want no snapshot", err)
	}
	e.mustRun(RunOptions{Full: true})
	s1 := sc.snapshot(t)
	e.ldap.Modify("dn: uid=alice,ou=people," + suffix + "\nchangetype: modify\nreplace: mail\nmail: alice2@firm.example\n")
	e.now = e.now.Add(time.Hour)
	if res := e.mustRun(RunOptions{}); res.Counts["updated"] != 1 {
		t.Fatalf("incremental run: %v", res.Counts)
	}
	if s2 := sc.snapshot(t); s2.AuditSeq != s1.AuditSeq {
		t.Fatalf("an incremental run stored a snapshot")
	}
	// The next full run patches it for alice, whom the incremental run
	// updated, and stores it.
	e.mustRun(RunOptions{Full: true})
	if s3 := sc.snapshot(t); s3.AuditSeq <= s1.AuditSeq {
		t.Fatalf("the full run after the incremental one kept the old snapshot")
	}
}
