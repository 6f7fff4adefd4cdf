package ldapsync

import (
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/internal/testenv"
	"github.com/dirsyncd/dirsyncd/store"
)

// readCounter counts the user reads a run makes.
type readCounter struct {
	testStore
	getUser, listUsers atomic.Int64
}

func (c *readCounter) GetUser(ctx context.Context, id string) (directory.User, error) {
	c.getUser.Add(1)
	return c.testStore.GetUser(ctx, id)
}

func (c *readCounter) ListUsers(ctx context.Context, q store.UserQuery) (store.Page[directory.User], error) {
	c.listUsers.Add(1)
	return c.testStore.ListUsers(ctx, q)
}

func (c *readCounter) reset() { c.getUser.Store(0); c.listUsers.Store(0) }

// TestFingerprintsSkipUnchangedUsers: a full sync of an unchanged directory
// reads no user (its fingerprints say every user still holds its entry),
// yet a change made in dirsyncd to a synced user, to any other field of
// it, or its deletion is still seen, and a changed mapping never matches.
func TestFingerprintsSkipUnchangedUsers(t *testing.T) {
	ctx := context.Background()
	rc := &readCounter{testStore: openSQLite(t)}
	e := newEnv(t, testenv.SlapdOptions{}, rc)
	first := e.mustRun(RunOptions{Full: true})
	if first.Counts["created"] != 5 {
		t.Fatalf("first full sync: %v", first.Counts)
	}
	fps := func() int { // fresh fingerprints
		t.Helper()
		vs := map[string]int64{}
		if err := rc.ListUserVersions(ctx, func(v store.UserVersion) error {
			if !v.Deleted {
				vs[v.ID] = v.Version
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		n := 0
		if err := rc.ListFingerprints(ctx, "ldap:corp", func(f store.Fingerprint) error {
			if vs[f.UserID] == f.UserVersion {
				n++
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := fps(); n != 5 {
		t.Fatalf("fresh fingerprints after the first sync = %d, want 5 (one per created user)", n)
	}
	full := func(wantGet, wantList int64, what string) *Result {
		t.Helper()
		rc.reset()
		res := e.mustRun(RunOptions{Full: true})
		if g, l := rc.getUser.Load(), rc.listUsers.Load(); g != wantGet || l != wantList {
			t.Fatalf("%s: %d GetUser and %d ListUsers calls, want %d and %d", what, g, l, wantGet, wantList)
		}
		return res
	}
	res := full(0, 0, "unchanged directory")
	if res.Counts["unchanged"] != 5 || e.domainEvents(res.RunID) != 0 {
		t.Fatalf("unchanged directory: counts %v, %d domain events", res.Counts, e.domainEvents(res.RunID))
	}

	// Another actor changes a field the source manages: the user is read
	// again and the entry's value restored.
	alice := e.user("alice")
	alice.Email = "alice@elsewhere.example"
	alice.Emails = nil
	other := audit.Meta{Actor: "scim:entra"}
	if err := rc.Update(ctx, other, func(ctx context.Context, tx store.Tx) error { return tx.UpdateUser(ctx, &alice, 0) }); err != nil {
		t.Fatal(err)
	}
	res = full(1, 0, "after a change in dirsyncd")
	if got := e.user("alice").Email; got != "alice@firm.example" || res.Counts["updated"] != 1 {
		t.Fatalf("alice's e-mail = %q, counts %v: the directory's value was not restored", got, res.Counts)
	}
	full(0, 0, "after the restore") // the update left a fresh fingerprint

	// A field no source manages: read once, nothing written but the
	// fingerprint, then skipped again.
	alice = e.user("alice")
	alice.ExternalID = "ext-1"
	if err := rc.Update(ctx, other, func(ctx context.Context, tx store.Tx) error { return tx.UpdateUser(ctx, &alice, 0) }); err != nil {
		t.Fatal(err)
	}
	res = full(1, 0, "after an unmanaged change")
	if res.Counts["unchanged"] != 5 || e.domainEvents(res.RunID) != 0 || fps() != 5 {
		t.Fatalf("unmanaged change: counts %v, %d domain events, %d fresh fingerprints", res.Counts, e.domainEvents(res.RunID), fps())
	}
	full(0, 0, "after the fingerprint was renewed")

	// A changed mapping (here the display name from another attribute)
	// matches no fingerprint: every user is compared again.
	e.src.Attributes.DisplayName = "sn"
	res = full(5, 0, "after a mapping change")
	if res.Counts["updated"] != 5 {
		t.Fatalf("mapping change: counts %v, want every user updated", res.Counts)
	}
	full(0, 0, "after the mapping change")

	// A user deleted in dirsyncd is never taken for unchanged.
	bob := e.user("bob")
	if err := rc.Update(ctx, other, func(ctx context.Context, tx store.Tx) error { return tx.DeleteUser(ctx, bob.ID) }); err != nil {
		t.Fatal(err)
	}
	res = full(1, 0, "after a deletion in dirsyncd")
	if its := e.items(res.RunID, "failed"); len(its) != 1 || !strings.Contains(its[0].Reason, "is deleted in dirsyncd") {
		t.Fatalf("deleted user: failed items %+v", its)
	}

	// Fingerprints lost (a cache): many stale ones make one bulk read of
	// the users instead of one read per entry, and they are written again.
	h, ok := rc.testStore.(interface {
		TestingExecRaw(ctx context.Context, q string) error
	})
	if !ok {
		t.Fatalf("store %T has no TestingExecRaw", rc.testStore)
	}
	for _, q := range []string{`DELETE FROM sync_fingerprints`, `DELETE FROM sync_snapshots`} {
		if err := h.TestingExecRaw(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	saved := staleBulkRead
	staleBulkRead = 0
	rc.reset()
	res, err := e.run(RunOptions{Full: true})
	staleBulkRead = saved
	if err != nil {
		t.Fatal(err)
	}
	if g, l := rc.getUser.Load(), rc.listUsers.Load(); g != 1 || l == 0 {
		t.Fatalf("lost fingerprints: %d GetUser (want 1: the deleted bob) and %d ListUsers calls (want a bulk read)", g, l)
	}
	if res.Counts["unchanged"] != 4 || e.domainEvents(res.RunID) != 0 || fps() != 4 {
		t.Fatalf("lost fingerprints: counts %v, %d domain events, %d fresh fingerprints (want 4)", res.Counts, e.domainEvents(res.RunID), fps())
	}
	full(1, 0, "after the fingerprints were rebuilt") // bob stays deleted: read each time
}

// memberReadCounter counts the member reads of a run.
type memberReadCounter struct {
	testStore
	perGroup, bulk atomic.Int64
}

func (c *memberReadCounter) ListGroupMembers(ctx context.Context, groupID, after string, limit int) ([]string, error) {
	c.perGroup.Add(1)
	return c.testStore.ListGroupMembers(ctx, groupID, after, limit)
}

func (c *memberReadCounter) ListSourceMemberships(ctx context.Context, source string, fn func(store.GroupMembership) error) error {
	c.bulk.Add(1)
	return c.testStore.ListSourceMemberships(ctx, source, fn)
}

// TestGroupFingerprintsSkipUnchangedGroups: a full sync reads the stored
// members only of groups whose resolved members or stored version moved,
// so a member change made in dirsyncd is still undone.
func TestGroupFingerprintsSkipUnchangedGroups(t *testing.T) {
	ctx := context.Background()
	mc := &memberReadCounter{testStore: openSQLite(t)}
	e := newEnv(t, testenv.SlapdOptions{}, mc)
	e.mustRun(RunOptions{Full: true})
	full := func(wantReads int64, what string) *Result {
		t.Helper()
		mc.perGroup.Store(0)
		mc.bulk.Store(0)
		res := e.mustRun(RunOptions{Full: true})
		if got := mc.perGroup.Load() + mc.bulk.Load(); got != wantReads || res.Counts["groups_members_read"] != wantReads {
			t.Fatalf("%s: %d member reads (groups_members_read %d), want %d", what, got, res.Counts["groups_members_read"], wantReads)
		}
		return res
	}
	full(0, "unchanged directory")

	solo := e.groupMembers("solo")
	g, err := mc.FindGroupBySourceKey(ctx, "ldap:corp", groupKey(t, e, "solo"))
	if err != nil {
		t.Fatal(err)
	}
	intruder := e.user("alice")
	other := audit.Meta{Actor: "scim:entra"}
	if err := mc.Update(ctx, other, func(ctx context.Context, tx store.Tx) error {
		return tx.AddMembers(ctx, g.ID, []string{intruder.ID})
	}); err != nil {
		t.Fatal(err)
	}
	res := full(1, "after a member was added in dirsyncd")
	if got := e.groupMembers("solo"); !slices.Equal(got, solo) || res.Counts["members_removed"] != 1 {
		t.Fatalf("solo = %v (counts %v), want %v: the member added in dirsyncd stays", got, res.Counts, solo)
	}
	full(0, "after the repair")

	// Removed in dirsyncd: put back.
	erin := e.user("erin")
	if err := mc.Update(ctx, other, func(ctx context.Context, tx store.Tx) error {
		return tx.RemoveMembers(ctx, g.ID, []string{erin.ID})
	}); err != nil {
		t.Fatal(err)
	}
	res = full(1, "after a member was removed in dirsyncd")
	if got := e.groupMembers("solo"); !slices.Equal(got, solo) || res.Counts["members_added"] != 1 {
		t.Fatalf("solo = %v (counts %v), want %v", got, res.Counts, solo)
	}
	full(0, "after the second repair")
}

func groupKey(t *testing.T, e *env, name string) string {
	t.Helper()
	p, err := e.st.ListGroups(context.Background(), store.GroupQuery{Filter: store.Cmp{Field: "displayName", Op: store.OpEq, Value: name}, Limit: 2})
	if err != nil || len(p.Items) != 1 {
		t.Fatalf("group %s: %v", name, err)
	}
	return p.Items[0].SourceKey
}

// slowPrefetch holds the first ListLinks until the LDAP read has gone past
// its second page.
type slowPrefetch struct {
	testStore
	release chan struct{}
	once    atomic.Bool
}

func (s *slowPrefetch) ListLinks(ctx context.Context, source, after string, limit int) ([]directory.SourceLink, error) {
	if s.once.CompareAndSwap(false, true) {
		select {
		case <-s.release:
		case <-time.After(10 * time.Second):
			return nil, errors.New("the LDAP read waited for the store's state")
		}
	}
	return s.testStore.ListLinks(ctx, source, after, limit)
}

// TestUserReadGoesOnDuringPrefetch: a full sync keeps reading users while
// the store's state is still being read (the entries wait, mapped, in a
// backlog), and the result is the same as with the state read first.
func TestUserReadGoesOnDuringPrefetch(t *testing.T) {
	sp := &slowPrefetch{testStore: openSQLite(t), release: make(chan struct{})}
	sp.once.Store(true) // the first sync reads at its pace
	e := newEnv(t, testenv.SlapdOptions{}, sp)
	e.mustRun(RunOptions{Full: true})
	// A change in the directory, then a full sync whose prefetch is slow.
	e.ldap.Modify("dn: uid=carol,ou=people," + suffix + "\nchangetype: modify\nreplace: mail\nmail: carol.new@firm.example\n")
	sp.once.Store(false)
	e.hook = func(kind string, page int) {
		if kind == "users" && page == 1 {
			close(sp.release)
		}
	}
	res := e.mustRun(RunOptions{Full: true})
	if res.Counts["updated"] != 1 || res.Counts["unchanged"] != 4 || res.Counts["gone"] != 0 {
		t.Fatalf("counts %v, want carol updated and the other 4 unchanged", res.Counts)
	}
	if got := e.user("carol").Email; got != "carol.new@firm.example" {
		t.Fatalf("carol's e-mail = %q", got)
	}
}

// TestReferralsAbortByDefault: a search reference means part of the
// subtree was not read, so by default the run aborts before anything is
// marked gone and names the reference; with referrals: ignore it reads on
// and counts them.
func TestReferralsAbortByDefault(t *testing.T) {
	ldif := fixture(t) + `
dn: ou=elsewhere,ou=people,` + suffix + `
objectClass: referral
objectClass: extensibleObject
ou: elsewhere
ref: ldap://other.example/ou=elsewhere,dc=example,dc=org
`
	e := newEnv(t, testenv.SlapdOptions{LDIF: ldif}, nil)
	if e.src.Referrals != "abort" {
		t.Fatalf("default referrals policy = %q, want abort", e.src.Referrals)
	}
	e.src.Referrals = "ignore"
	res := e.mustRun(RunOptions{Full: true})
	if res.Counts["referrals_ignored"] != 1 || res.Counts["created"] != 5 {
		t.Fatalf("ignore: counts %v, want 5 users created and 1 referral ignored", res.Counts)
	}
	e.src.Referrals = "abort"
	res, err := e.run(RunOptions{Full: true})
	if !errors.Is(err, ErrTruncated) || res.Status != directory.RunAborted || !strings.Contains(err.Error(), "ldap://other.example/ou=elsewhere") {
		t.Fatalf("abort: %v (status %s), want an aborted run naming the reference", err, res.Status)
	}
	e.assertNothingGone(5)
}

// TestDigestUnchangedByUpgrade: the digest of an entry's fields is the
// truncated SHA-256 of the prefix, then each field followed by a NUL,
// exactly as written to a streaming hash before the one-buffer version,
// so fingerprints stored by an older dirsyncd still match (long fields
// included, which do not fit the stack buffer).
func TestDigestUnchangedByUpgrade(t *testing.T) {
	ref := func(prefix []byte, f fields) digest {
		h := sha256.New()
		h.Write(prefix)
		for _, s := range []string{f.UserName, f.Email, f.GivenName, f.FamilyName, f.DisplayName, f.FirmNumber,
			f.UsualRole, f.Location, f.UserType, strconv.FormatBool(f.Active)} {
			h.Write([]byte(s))
			h.Write([]byte{0})
		}
		var d digest
		copy(d[:], h.Sum(nil))
		return d
	}
	long := strings.Repeat("x", 700)
	for _, tc := range []struct {
		prefix []byte
		f      fields
	}{
		{nil, fields{}},
		{[]byte("openldap\x00{...}\x00"), fields{UserName: "alice", Email: "alice@example.org", GivenName: "Alice", Active: true}},
		{[]byte("p"), fields{UserName: "bob", DisplayName: long, FirmNumber: "0A123B", UsualRole: "caseworker", Location: "Leeds", UserType: "staff"}},
		{[]byte(long), fields{UserName: long, Email: long}},
	} {
		if got, want := tc.f.digestWith(tc.prefix), ref(tc.prefix, tc.f); got != want {
			t.Errorf("digestWith(%.20q, %+.40v) = %x, want %x", tc.prefix, tc.f, got, want)
		}
	}
	if (fields{UserName: "a", Email: "b"}).digest() == (fields{UserName: "ab"}).digest() {
		t.Error("field boundaries do not count")
	}
}

// TestNormTimeFastPathAgrees: the canonical form is checked without
// parsing by layout, with the same result as parsing.
func TestNormTimeFastPathAgrees(t *testing.T) {
	for _, s := range []string{
		"20261202101010Z", "20240229235959Z", "20230229000000Z", "20261301000000Z", "20261200000000Z",
		"20261231240000Z", "20261231236000Z", "20261231235960Z", "00010101000000Z", "2026120210101aZ",
		"20261202101010", "20261202101010.5Z", "20261202101010+0100", "20261202101010.123456-0230", "", "Z",
		"99991231235959Z", "20261202101010z",
	} {
		if got, want := normTime(s), parseNormTime(s); got != want {
			t.Errorf("normTime(%q) = %q, by layout %q", s, got, want)
		}
	}
	if _, ok := canonicalTime("20261202101010Z"); !ok {
		t.Error("the canonical form takes the slow path")
	}
}

// BenchmarkNormTime: an OpenLDAP modifyTimestamp (canonical), and one
// with a zone offset (parsed by layout).
func BenchmarkNormTime(b *testing.B) {
	for _, tc := range []struct {
		name, s string
		f       func(string) string
	}{
		{"canonical", "20261202101010Z", normTime},
		{"canonical-by-layout", "20261202101010Z", parseNormTime}, // what normTime did before
		{"offset", "20261202101010+0100", normTime},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				if tc.f(tc.s) == "" {
					b.Fatal("unparsed")
				}
			}
		})
	}
}
