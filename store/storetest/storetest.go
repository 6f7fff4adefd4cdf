package storetest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// Hooks is the test-only access a backend gives the suite: raw SQL (to
// inject failures and tamper with the audit log) and the clock.
type Hooks interface {
	// TestingExecRaw runs raw SQL (possibly several statements) outside the
	// audit machinery.
	TestingExecRaw(ctx context.Context, query string) error
	// TestingSetNow replaces the store's clock.
	TestingSetNow(now func() time.Time)
	// Dialect names the SQL dialect ("sqlite" or "postgres").
	Dialect() string
}

// RawExecer is the raw-SQL part of Hooks.
type RawExecer interface {
	TestingExecRaw(ctx context.Context, query string) error
}

// Clock is a settable clock for tests.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock starts a clock at a fixed instant.
func NewClock() *Clock {
	return &Clock{t: time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type env struct {
	t     *testing.T
	s     store.Store
	h     Hooks
	clock *Clock
	ctx   context.Context
}

var meta = audit.Meta{Actor: "admin:tester", RunID: "run-1", RequestID: "req-1"}

// Run runs the conformance suite; newStore returns a fresh, empty store
// (migrated or not: Run migrates) implementing Hooks.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(e *env)
	}{
		{"Migrate", testMigrate},
		{"UserCreateGet", testUserCreateGet},
		{"UserUniqueness", testUserUniqueness},
		{"UserUpdate", testUserUpdate},
		{"UserDelete", testUserDelete},
		{"AddMembersDuringUserDelete", testAddMembersDuringUserDelete},
		{"ReverseGroupEdgesAtOnce", testReverseGroupEdgesAtOnce},
		{"UpsertUsers", testUpsertUsers},
		{"Links", testLinks},
		{"Fingerprints", testFingerprints}, // fingerprints.go
		{"GroupFingerprints", testGroupFingerprints},
		{"SyncSnapshots", testSyncSnapshots}, // snapshots.go
		{"AuditUsersAfter", testAuditUsersAfter},
		{"UserFilters", testUserFilters},
		{"UserPaging", testUserPaging},
		{"SearchUsers", testSearchUsers}, // admin.go
		{"Groups", testGroups},
		{"GroupMembers", testGroupMembers},
		{"GroupFiltersAndChildren", testGroupFiltersAndChildren},
		{"FirmsOffices", testFirmsOffices},
		{"LegacyLogins", testLegacyLogins},
		{"CWABulkPuts", testCWABulkPuts}, // cwa.go
		{"Grants", testGrants},
		{"BulkReads", testBulkReads},
		{"SourceMemberships", testSourceMemberships}, // bulk.go
		{"Runs", testRuns},
		{"Cursors", testCursors},
		{"Leases", testLeases},
		{"AuditEvents", testAuditEvents},
		{"UpdateRollback", testUpdateRollback},
		{"FailedAuditRollsBack", testFailedAuditRollsBack},
		{"AppendOnly", testAppendOnly},
		{"TamperEdit", testTamperEdit},
		{"TamperDelete", testTamperDelete},
		{"ConcurrentWriters", testConcurrentWriters},
		{"ConcurrentSameUserName", testConcurrentSameUserName},
		{"SCIMGroupCommit", testSCIMGroupCommit}, // scim.go
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			h, ok := s.(Hooks)
			if !ok {
				t.Fatalf("store %T does not implement storetest.Hooks", s)
			}
			clock := NewClock()
			h.TestingSetNow(clock.Now)
			ctx := context.Background()
			if err := s.Migrate(ctx); err != nil {
				t.Fatalf("migrate: %v", err)
			}
			tc.fn(&env{t: t, s: s, h: h, clock: clock, ctx: ctx})
		})
	}
}

func (e *env) update(fn func(tx store.Tx) error) error {
	return e.s.Update(e.ctx, meta, func(ctx context.Context, tx store.Tx) error { return fn(tx) })
}

func (e *env) mustUpdate(fn func(tx store.Tx) error) {
	e.t.Helper()
	if err := e.update(fn); err != nil {
		e.t.Fatalf("update: %v", err)
	}
}

func (e *env) events() []audit.Event {
	e.t.Helper()
	var out []audit.Event
	if err := e.s.Audit(e.ctx, store.AuditFilter{}, func(ev audit.Event) error { out = append(out, ev); return nil }); err != nil {
		e.t.Fatalf("audit: %v", err)
	}
	return out
}

// actions lists the events' actions, checking that each carries the
// suite's audit.Meta (tests using actions write only through e.update).
func (e *env) actions() []string {
	e.t.Helper()
	var out []string
	for _, ev := range e.events() {
		if ev.Actor != meta.Actor || ev.RunID != meta.RunID || ev.RequestID != meta.RequestID || ev.ObjectType == "" || ev.ObjectID == "" {
			e.t.Fatalf("event %d (%s) does not carry the transaction's meta and object: %+v", ev.Seq, ev.Action, ev)
		}
		out = append(out, ev.Action)
	}
	return out
}

func (e *env) raw(q string) {
	e.t.Helper()
	if err := e.h.TestingExecRaw(e.ctx, q); err != nil {
		e.t.Fatalf("raw sql %q: %v", q, err)
	}
}

func (e *env) createUser(u directory.User) directory.User {
	e.t.Helper()
	e.mustUpdate(func(tx store.Tx) error { return tx.CreateUser(e.ctx, &u) })
	return u
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
}

func user(name, email string) directory.User {
	return directory.User{UserName: name, Email: email, Active: true, GivenName: "G" + name, FamilyName: "F" + name}
}

func testMigrate(e *env) {
	if err := e.s.Migrate(e.ctx); err != nil {
		e.t.Fatalf("second migrate: %v", err)
	}
	if err := e.s.Ping(e.ctx); err != nil {
		e.t.Fatalf("ping: %v", err)
	}
}

func testUserCreateGet(e *env) {
	t := e.t
	u := e.createUser(directory.User{UserName: "Alice", Email: "Alice@Example.org", Active: true, ExternalID: "ext-1",
		Emails: []directory.Email{{Value: "Alice@Example.org", Type: "work", Primary: true}, {Value: "a@home.test", Type: "home"}},
		Attrs:  []byte(`{"b": 1, "a": "x"}`)})
	if u.ID == "" || u.Version != 1 || !u.CreatedAt.Equal(e.clock.Now().Truncate(time.Microsecond)) || !u.UpdatedAt.Equal(u.CreatedAt) {
		t.Fatalf("created user = %+v", u)
	}
	got, err := e.s.GetUser(e.ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.UserName != "Alice" || got.Email != "Alice@Example.org" || len(got.Emails) != 2 || got.Emails[1].Value != "a@home.test" ||
		!got.Emails[0].Primary || string(got.Attrs) != `{"a":"x","b":1}` || !got.CreatedAt.Equal(u.CreatedAt) || got.DeletedAt != nil {
		t.Fatalf("GetUser = %+v", got)
	}
	for _, n := range []string{"alice", "ALICE", "Alice"} {
		if g, err := e.s.GetUserByUserName(e.ctx, n); err != nil || g.ID != u.ID {
			t.Fatalf("GetUserByUserName(%q) = %v, %v", n, g.ID, err)
		}
	}
	if g, err := e.s.GetUserByEmail(e.ctx, "alice@EXAMPLE.org"); err != nil || g.ID != u.ID {
		t.Fatalf("GetUserByEmail = %v, %v", g.ID, err)
	}
	_, err = e.s.GetUser(e.ctx, "nope")
	wantErr(t, err, store.ErrNotFound)
	if !strings.Contains(err.Error(), "nope") {
		t.Fatalf("error %q does not name the object", err)
	}
	_, err = e.s.GetUserByUserName(e.ctx, "bob")
	wantErr(t, err, store.ErrNotFound)
	_, err = e.s.GetUserByEmail(e.ctx, "bob@x")
	wantErr(t, err, store.ErrNotFound)
	// Only the e-mail given: it becomes the primary entry of Emails.
	b := e.createUser(user("bob", "bob@example.org"))
	if len(b.Emails) != 1 || !b.Emails[0].Primary || b.Emails[0].Value != "bob@example.org" {
		t.Fatalf("emails = %+v", b.Emails)
	}
	// Reads inside the transaction see its own writes.
	e.mustUpdate(func(tx store.Tx) error {
		c := user("carol", "")
		if err := tx.CreateUser(e.ctx, &c); err != nil {
			return err
		}
		if _, err := tx.GetUserByUserName(e.ctx, "CAROL"); err != nil {
			return fmt.Errorf("own write not visible: %w", err)
		}
		return nil
	})
}

func testUserUniqueness(e *env) {
	e.createUser(user("alice", "alice@example.org"))
	tests := []struct {
		name string
		u    directory.User
	}{
		{"same userName other case", user("ALICE", "x@example.org")},
		{"same email other case", user("other", "ALICE@example.ORG")},
	}
	for _, tc := range tests {
		e.t.Run(tc.name, func(t *testing.T) {
			u := tc.u
			err := e.update(func(tx store.Tx) error { return tx.CreateUser(e.ctx, &u) })
			wantErr(t, err, store.ErrConflict)
			if !strings.Contains(err.Error(), "create user") {
				t.Fatalf("error %q lacks the operation", err)
			}
		})
	}
	// Users without e-mail do not collide on the empty e-mail.
	e.createUser(user("n1", ""))
	e.createUser(user("n2", ""))
	// Explicit duplicate ID.
	a, _ := e.s.GetUserByUserName(e.ctx, "alice")
	dup := user("zed", "")
	dup.ID = a.ID
	wantErr(e.t, e.update(func(tx store.Tx) error { return tx.CreateUser(e.ctx, &dup) }), store.ErrConflict)
	// Updating into another user's name is a conflict too.
	n1, _ := e.s.GetUserByUserName(e.ctx, "n1")
	n1.UserName = "Alice"
	wantErr(e.t, e.update(func(tx store.Tx) error { return tx.UpdateUser(e.ctx, &n1, 0) }), store.ErrConflict)
}

func testUserUpdate(e *env) {
	t := e.t
	u := e.createUser(user("alice", "alice@example.org"))
	n := len(e.events())
	// No-op: nothing changed, no event, same version.
	same := u
	e.clock.Advance(time.Minute)
	e.mustUpdate(func(tx store.Tx) error { return tx.UpdateUser(e.ctx, &same, 1) })
	if same.Version != 1 || len(e.events()) != n {
		t.Fatalf("no-op update: version %d, events %d→%d", same.Version, n, len(e.events()))
	}
	// Change with the right version.
	ch := u
	ch.DisplayName = "Alice A"
	e.mustUpdate(func(tx store.Tx) error { return tx.UpdateUser(e.ctx, &ch, 1) })
	got, _ := e.s.GetUser(e.ctx, u.ID)
	if got.Version != 2 || got.DisplayName != "Alice A" || !got.UpdatedAt.After(got.CreatedAt) || ch.Version != 2 {
		t.Fatalf("after update: %+v", got)
	}
	evs := e.events()
	last := evs[len(evs)-1]
	if last.Action != "user.update" || last.ObjectID != u.ID || !strings.Contains(string(last.Before), `"version":1`) ||
		!strings.Contains(string(last.After), `"Alice A"`) {
		t.Fatalf("update event = %+v", last)
	}
	// Stale version.
	stale := got
	stale.DisplayName = "stale"
	err := e.update(func(tx store.Tx) error { return tx.UpdateUser(e.ctx, &stale, 1) })
	wantErr(t, err, store.ErrVersionMismatch)
	// Unknown user.
	ghost := user("ghost", "")
	ghost.ID = "missing"
	wantErr(t, e.update(func(tx store.Tx) error { return tx.UpdateUser(e.ctx, &ghost, 0) }), store.ErrNotFound)
	// expectVersion 0 skips the check.
	got.DisplayName = "any"
	e.mustUpdate(func(tx store.Tx) error { return tx.UpdateUser(e.ctx, &got, 0) })
	if got.Version != 3 {
		t.Fatalf("version = %d", got.Version)
	}
}

func testUserDelete(e *env) {
	t := e.t
	u := e.createUser(user("alice", "alice@example.org"))
	g := directory.Group{Source: "scim:c", DisplayName: "G"}
	e.mustUpdate(func(tx store.Tx) error {
		if err := tx.CreateGroup(e.ctx, &g); err != nil {
			return err
		}
		return tx.AddMembers(e.ctx, g.ID, []string{u.ID})
	})
	before, err := e.s.GetGroup(e.ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	e.mustUpdate(func(tx store.Tx) error { return tx.DeleteUser(e.ctx, u.ID) })
	// The members are part of the SCIM Group: losing one changes its ETag.
	if after, err := e.s.GetGroup(e.ctx, g.ID); err != nil || after.Version <= before.Version {
		t.Fatalf("group version %d after its member was deleted, %d before (%v)", after.Version, before.Version, err)
	}
	got, err := e.s.GetUser(e.ctx, u.ID)
	if err != nil || got.DeletedAt == nil || got.Active || got.Version != 2 {
		t.Fatalf("deleted user = %+v, %v", got, err)
	}
	_, err = e.s.GetUserByUserName(e.ctx, "alice")
	wantErr(t, err, store.ErrNotFound)
	_, err = e.s.GetUserByEmail(e.ctx, "alice@example.org")
	wantErr(t, err, store.ErrNotFound)
	if ok, _ := e.s.IsGroupMember(e.ctx, g.ID, u.ID); ok {
		t.Fatal("deleted user is still a member")
	}
	p, _ := e.s.ListUsers(e.ctx, store.UserQuery{Limit: -1})
	if p.Total != 0 {
		t.Fatalf("deleted user listed: %+v", p)
	}
	p, _ = e.s.ListUsers(e.ctx, store.UserQuery{Limit: -1, IncludeDeleted: true})
	if p.Total != 1 {
		t.Fatalf("IncludeDeleted total = %d", p.Total)
	}
	n := len(e.events())
	e.mustUpdate(func(tx store.Tx) error { return tx.DeleteUser(e.ctx, u.ID) }) // no-op
	if len(e.events()) != n {
		t.Fatal("deleting a deleted user recorded an event")
	}
	acts := e.actions()
	if acts[len(acts)-2] != "user.delete" || acts[len(acts)-1] != "group.member.remove" {
		t.Fatalf("actions = %v", acts)
	}
	// The name and e-mail are free again; updating the deleted user is not allowed.
	e.createUser(user("ALICE", "alice@example.org"))
	wantErr(t, e.update(func(tx store.Tx) error { return tx.UpdateUser(e.ctx, &got, 0) }), store.ErrNotFound)
	wantErr(t, e.update(func(tx store.Tx) error { return tx.DeleteUser(e.ctx, "missing") }), store.ErrNotFound)
}

// testAddMembersDuringUserDelete: a user deleted while another
// transaction adds it to a group does not end up a member of it (the add
// waits for the delete and then finds the user deleted).
func testAddMembersDuringUserDelete(e *env) {
	t := e.t
	for _, replace := range []bool{false, true} {
		u := e.createUser(user(fmt.Sprintf("racer%v", replace), ""))
		g := directory.Group{Source: "scim:c", DisplayName: fmt.Sprintf("R%v", replace)}
		e.mustUpdate(func(tx store.Tx) error { return tx.CreateGroup(e.ctx, &g) })
		deleted, release := make(chan struct{}), make(chan struct{})
		delErr := make(chan error, 1)
		go func() {
			delErr <- e.s.Update(e.ctx, meta, func(ctx context.Context, tx store.Tx) error {
				if err := tx.DeleteUser(ctx, u.ID); err != nil {
					close(deleted)
					return err
				}
				close(deleted)
				<-release
				return nil
			})
		}()
		<-deleted
		time.AfterFunc(300*time.Millisecond, func() { close(release) })
		err := e.update(func(tx store.Tx) error {
			if replace {
				return tx.ReplaceMembers(e.ctx, g.ID, []string{u.ID})
			}
			return tx.AddMembers(e.ctx, g.ID, []string{u.ID})
		})
		if err := <-delErr; err != nil {
			t.Fatal(err)
		}
		wantErr(t, err, store.ErrNotFound)
		if ok, _ := e.s.IsGroupMember(e.ctx, g.ID, u.ID); ok {
			t.Fatalf("replace=%v: the deleted user became a member", replace)
		}
	}
}

// testReverseGroupEdgesAtOnce: A→B and B→A added at once: one edge is
// added, the other is refused as a cycle (ErrConflict), and neither
// transaction fails on a lock (the two groups are locked in id order
// whichever is the parent).
func testReverseGroupEdgesAtOnce(e *env) {
	t := e.t
	a := directory.Group{ID: "edge-a", Source: "scim:c", DisplayName: "EdgeA"}
	b := directory.Group{ID: "edge-b", Source: "scim:c", DisplayName: "EdgeB"}
	e.mustUpdate(func(tx store.Tx) error {
		if err := tx.CreateGroup(e.ctx, &a); err != nil {
			return err
		}
		return tx.CreateGroup(e.ctx, &b)
	})
	locked, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- e.s.Update(e.ctx, meta, func(ctx context.Context, tx store.Tx) error {
			a.DisplayName = "EdgeA2" // locks A
			err := tx.UpdateGroup(ctx, &a, 0)
			close(locked)
			if err != nil {
				return err
			}
			<-release
			return tx.AddGroupChild(ctx, a.ID, b.ID)
		})
	}()
	<-locked
	time.AfterFunc(300*time.Millisecond, func() { close(release) })
	err := e.update(func(tx store.Tx) error { return tx.AddGroupChild(e.ctx, b.ID, a.ID) })
	if err := <-first; err != nil {
		t.Fatalf("A→B: %v", err)
	}
	wantErr(t, err, store.ErrConflict)
}

func testUpsertUsers(e *env) {
	t := e.t
	pre := e.createUser(user("existing", "existing@example.org"))
	mk := func() []*directory.User {
		a, b := user("a", "a@example.org"), user("b", "b@example.org")
		ex := user("EXISTING", "existing@example.org") // matched by userName, case-insensitively
		ex.GivenName, ex.FamilyName = pre.GivenName, pre.FamilyName
		return []*directory.User{&a, &b, &ex}
	}
	var created, updated int
	users := mk()
	n := len(e.events())
	e.mustUpdate(func(tx store.Tx) (err error) { created, updated, err = tx.UpsertUsers(e.ctx, users); return })
	// "existing" changed only its userName's case: that is a change.
	if created != 2 || updated != 1 || users[2].ID != pre.ID || users[0].ID == "" || users[2].Version != 2 {
		t.Fatalf("first upsert: created %d updated %d users %+v", created, updated, users[2])
	}
	if got := len(e.events()) - n; got != 3 {
		t.Fatalf("events = %d, want 3", got)
	}
	// Same again: nothing changes, no events.
	n = len(e.events())
	users = mk()
	e.mustUpdate(func(tx store.Tx) (err error) { created, updated, err = tx.UpsertUsers(e.ctx, users); return })
	if created != 0 || updated != 0 || len(e.events()) != n || users[0].Version != 1 {
		t.Fatalf("repeat upsert: created %d updated %d events %d→%d", created, updated, n, len(e.events()))
	}
	// One change, by ID.
	a, _ := e.s.GetUserByUserName(e.ctx, "a")
	a.DisplayName = "A!"
	e.mustUpdate(func(tx store.Tx) (err error) {
		created, updated, err = tx.UpsertUsers(e.ctx, []*directory.User{&a})
		return
	})
	if created != 0 || updated != 1 || a.Version != 2 {
		t.Fatalf("change: created %d updated %d version %d", created, updated, a.Version)
	}
	// Conflicts: e-mail of another user; duplicate inside the batch.
	c := user("c", "B@example.org")
	wantErr(t, e.update(func(tx store.Tx) error { _, _, err := tx.UpsertUsers(e.ctx, []*directory.User{&c}); return err }), store.ErrConflict)
	d1, d2 := user("d", ""), user("D", "")
	wantErr(t, e.update(func(tx store.Tx) error { _, _, err := tx.UpsertUsers(e.ctx, []*directory.User{&d1, &d2}); return err }), store.ErrConflict)
	if _, err := e.s.GetUserByUserName(e.ctx, "c"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("conflicting upsert left a user: %v", err)
	}
	// Bulk: many users in one call (crosses insert batch sizes).
	var many []*directory.User
	for i := 0; i < 1234; i++ {
		u := user(fmt.Sprintf("bulk%04d", i), fmt.Sprintf("bulk%04d@example.org", i))
		many = append(many, &u)
	}
	e.mustUpdate(func(tx store.Tx) (err error) { created, _, err = tx.UpsertUsers(e.ctx, many); return })
	p, _ := e.s.ListUsers(e.ctx, store.UserQuery{Filter: store.Cmp{Field: "userName", Op: store.OpSw, Value: "bulk"}, Limit: 0})
	if created != 1234 || p.Total != 1234 {
		t.Fatalf("bulk: created %d total %d", created, p.Total)
	}
	got, _ := e.s.GetUserByEmail(e.ctx, "BULK1000@example.org")
	if got.UserName != "bulk1000" || len(got.Emails) != 1 {
		t.Fatalf("bulk user = %+v", got)
	}
}

func testLinks(e *env) {
	t := e.t
	u := e.createUser(user("alice", ""))
	v := e.createUser(user("bob", ""))
	e.mustUpdate(func(tx store.Tx) error {
		for _, l := range []directory.SourceLink{
			{UserID: u.ID, Source: "ldap:corp", Key: "k2", DN: "uid=alice,dc=x"},
			{UserID: v.ID, Source: "ldap:corp", Key: "k1"},
			{UserID: u.ID, Source: "scim:entra", Key: "ext-a"},
		} {
			if err := tx.PutLink(e.ctx, l); err != nil {
				return err
			}
		}
		return nil
	})
	if got, err := e.s.FindUserByLink(e.ctx, "ldap:corp", "k2"); err != nil || got.ID != u.ID {
		t.Fatalf("FindUserByLink = %v, %v", got.ID, err)
	}
	_, err := e.s.FindUserByLink(e.ctx, "ldap:corp", "K2")
	wantErr(t, err, store.ErrNotFound)
	ls, _ := e.s.ListUserLinks(e.ctx, u.ID)
	if len(ls) != 2 || ls[0].Source != "ldap:corp" || ls[0].DN != "uid=alice,dc=x" || ls[0].LastSeenAt.IsZero() {
		t.Fatalf("ListUserLinks = %+v", ls)
	}
	page, _ := e.s.ListLinks(e.ctx, "ldap:corp", "", 1)
	page2, _ := e.s.ListLinks(e.ctx, "ldap:corp", "k1", 10)
	if len(page) != 1 || page[0].Key != "k1" || len(page2) != 1 || page2[0].Key != "k2" {
		t.Fatalf("ListLinks pages = %+v %+v", page, page2)
	}
	scan := func(source string) map[string]directory.SourceLink {
		t.Helper()
		out := map[string]directory.SourceLink{}
		if err := e.s.ScanLinks(e.ctx, source, func(l directory.SourceLink) error {
			if _, dup := out[l.Key]; dup {
				t.Fatalf("ScanLinks gave %s twice", l.Key)
			}
			out[l.Key] = l
			return nil
		}); err != nil {
			t.Fatalf("ScanLinks: %v", err)
		}
		return out
	}
	if got := scan("ldap:corp"); len(got) != 2 || got["k2"].UserID != u.ID || got["k2"].DN != "uid=alice,dc=x" ||
		got["k1"].UserID != v.ID || got["k2"].LastSeenAt.IsZero() || got["k2"].GoneAt != nil {
		t.Fatalf("ScanLinks(ldap:corp) = %+v", got)
	}
	if got := scan("scim:entra"); len(got) != 1 || got["ext-a"].UserID != u.ID {
		t.Fatalf("ScanLinks(scim:entra) = %+v", got)
	}
	stop := errors.New("stop")
	if err := e.s.ScanLinks(e.ctx, "ldap:corp", func(directory.SourceLink) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("ScanLinks with an error from fn: %v", err)
	}
	// Touching a link (only last seen changes) records nothing.
	n := len(e.events())
	e.clock.Advance(time.Hour)
	e.mustUpdate(func(tx store.Tx) error {
		return tx.PutLink(e.ctx, directory.SourceLink{UserID: u.ID, Source: "ldap:corp", Key: "k2", DN: "uid=alice,dc=x"})
	})
	ls, _ = e.s.ListUserLinks(e.ctx, u.ID)
	if len(e.events()) != n || !ls[0].LastSeenAt.Equal(e.clock.Now().Truncate(time.Microsecond)) {
		t.Fatalf("touch: events %d→%d, last seen %v", n, len(e.events()), ls[0].LastSeenAt)
	}
	e.mustUpdate(func(tx store.Tx) error { return tx.MarkLinkGone(e.ctx, "ldap:corp", "k2") })
	ls, _ = e.s.ListUserLinks(e.ctx, u.ID)
	if ls[0].GoneAt == nil {
		t.Fatal("link not gone")
	}
	if got := scan("ldap:corp"); got["k2"].GoneAt == nil || got["k1"].GoneAt != nil {
		t.Fatalf("ScanLinks after MarkLinkGone = %+v", got)
	}
	e.mustUpdate(func(tx store.Tx) error { return tx.PutLink(e.ctx, ls[0]) })
	ls, _ = e.s.ListUserLinks(e.ctx, u.ID)
	if ls[0].GoneAt != nil {
		t.Fatal("PutLink did not un-gone the link")
	}
	e.mustUpdate(func(tx store.Tx) error { return tx.DeleteLink(e.ctx, "scim:entra", "ext-a") })
	wantErr(t, e.update(func(tx store.Tx) error { return tx.DeleteLink(e.ctx, "scim:entra", "ext-a") }), store.ErrNotFound)
	wantErr(t, e.update(func(tx store.Tx) error { return tx.MarkLinkGone(e.ctx, "x", "y") }), store.ErrNotFound)
	wantErr(t, e.update(func(tx store.Tx) error {
		return tx.PutLink(e.ctx, directory.SourceLink{UserID: "no-such-user", Source: "x", Key: "y"})
	}), store.ErrNotFound)
	got := strings.Join(e.actions(), ",")
	if strings.Count(got, "link.put") != 4 || !strings.Contains(got, "link.gone") || !strings.Contains(got, "link.delete") {
		t.Fatalf("actions = %s", got)
	}
}

func seedFilterUsers(e *env) map[string]directory.User {
	us := []directory.User{
		{UserName: "Alice", Email: "alice@Example.org", ExternalID: "EXT-1", DisplayName: "Alice Smith", GivenName: "Alice", FamilyName: "Smith", Active: true, UserType: "Employee", FirmNumber: "100",
			Emails: []directory.Email{{Value: "alice@Example.org", Type: "work", Primary: true}, {Value: "alice@home.test", Type: "home"}}},
		{UserName: "bob", Email: "bob@example.org", ExternalID: "ext-2", DisplayName: "Bob Jones", GivenName: "Bob", FamilyName: "Jones", Active: false, FirmNumber: "200",
			Emails: []directory.Email{{Value: "bob@example.org", Type: "work", Primary: true}}},
		{UserName: "carol_x", Email: "", DisplayName: "Carol 100%", GivenName: "Carol", Active: true,
			Emails: nil},
		{UserName: "dave%", Email: "dave@other.test", DisplayName: "", Active: true, UserType: "Contractor",
			Emails: []directory.Email{{Value: "dave@other.test", Type: "home", Primary: true}}},
	}
	out := map[string]directory.User{}
	for i := range us {
		e.clock.Advance(time.Hour)
		out[us[i].UserName] = e.createUser(us[i])
	}
	return out
}

func names(us []directory.User) string {
	var out []string
	for _, u := range us {
		out = append(out, u.UserName)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func testUserFilters(e *env) {
	us := seedFilterUsers(e)
	bob := us["bob"]
	c := func(f store.Field, op store.Op, v any) store.Filter { return store.Cmp{Field: f, Op: op, Value: v} }
	tests := []struct {
		name string
		f    store.Filter
		want string
	}{
		{"eq userName ci", c("userName", store.OpEq, "ALICE"), "Alice"},
		{"ne userName", c("userName", store.OpNe, "alice"), "bob,carol_x,dave%"},
		{"co userName ci", c("userName", store.OpCo, "LI"), "Alice"},
		{"sw userName", c("userName", store.OpSw, "b"), "bob"},
		{"ew userName", c("userName", store.OpEw, "OB"), "bob"},
		{"co escapes underscore", c("userName", store.OpCo, "a_o"), ""},
		{"co literal underscore", c("userName", store.OpCo, "ol_"), "carol_x"},
		{"ew literal percent", c("userName", store.OpEw, "e%"), "dave%"},
		{"co percent is not a wildcard", c("userName", store.OpCo, "%"), "dave%"},
		{"gt userName", c("userName", store.OpGt, "BOB"), "carol_x,dave%"},
		{"ge userName", c("userName", store.OpGe, "BOB"), "bob,carol_x,dave%"},
		{"lt userName", c("userName", store.OpLt, "bob"), "Alice"},
		{"le userName", c("userName", store.OpLe, "bob"), "Alice,bob"},
		{"externalId case-exact eq", c("externalId", store.OpEq, "ext-1"), ""},
		{"externalId eq", c("externalId", store.OpEq, "EXT-1"), "Alice"},
		{"externalId case-exact co", c("externalId", store.OpCo, "ext"), "bob"},
		{"externalId pr", c("externalId", store.OpPr, nil), "Alice,bob"},
		{"id eq", c("id", store.OpEq, bob.ID), "bob"},
		{"email eq ci", c("email", store.OpEq, "ALICE@example.ORG"), "Alice"},
		{"email pr", c("email", store.OpPr, nil), "Alice,bob,dave%"},
		{"email ew", c("email", store.OpEw, "EXAMPLE.ORG"), "Alice,bob"},
		{"displayName co ci", c("displayName", store.OpCo, "smith"), "Alice"},
		{"displayName co percent", c("displayName", store.OpCo, "100%"), "carol_x"},
		{"displayName pr", c("displayName", store.OpPr, nil), "Alice,bob,carol_x"},
		{"givenName eq exact", c("givenName", store.OpEq, "Carol"), "carol_x"},
		{"familyName sw", c("familyName", store.OpSw, "Jo"), "bob"},
		{"userType eq", c("userType", store.OpEq, "Contractor"), "dave%"},
		{"firmNumber eq", c("firmNumber", store.OpEq, "200"), "bob"},
		{"active eq false", c("active", store.OpEq, false), "bob"},
		{"active ne false", c("active", store.OpNe, false), "Alice,carol_x,dave%"},
		{"created gt", c("meta.created", store.OpGt, us["bob"].CreatedAt), "carol_x,dave%"},
		{"created ge", c("meta.created", store.OpGe, us["bob"].CreatedAt), "bob,carol_x,dave%"},
		{"created lt string", c("meta.created", store.OpLt, us["bob"].CreatedAt.Format(time.RFC3339Nano)), "Alice"},
		{"lastModified le", c("meta.lastModified", store.OpLe, us["Alice"].UpdatedAt), "Alice"},
		{"and", store.And{Left: c("active", store.OpEq, true), Right: c("email", store.OpPr, nil)}, "Alice,dave%"},
		{"or", store.Or{Left: c("userName", store.OpEq, "bob"), Right: c("userName", store.OpEq, "dave%")}, "bob,dave%"},
		{"not", store.Not{F: c("active", store.OpEq, true)}, "bob"},
		{"not or", store.Not{F: store.Or{Left: c("userName", store.OpEq, "bob"), Right: c("userName", store.OpEq, "alice")}}, "carol_x,dave%"},
		{"emails type", store.ValuePath{Attr: "emails", F: c("type", store.OpEq, "work")}, "Alice,bob"},
		{"emails value ci", store.ValuePath{Attr: "emails", F: c("value", store.OpEq, "ALICE@HOME.TEST")}, "Alice"},
		{"emails and", store.ValuePath{Attr: "emails", F: store.And{Left: c("type", store.OpEq, "home"), Right: c("value", store.OpCo, "other")}}, "dave%"},
		{"emails primary", store.ValuePath{Attr: "emails", F: c("primary", store.OpEq, true)}, "Alice,bob,dave%"},
		{"emails value pr", store.ValuePath{Attr: "emails", F: c("value", store.OpPr, nil)}, "Alice,bob,dave%"},
		{"emails same value needed", store.ValuePath{Attr: "emails", F: store.And{Left: c("type", store.OpEq, "home"), Right: c("value", store.OpEw, "example.org")}}, ""},
	}
	for _, tc := range tests {
		e.t.Run(tc.name, func(t *testing.T) {
			p, err := e.s.ListUsers(e.ctx, store.UserQuery{Filter: tc.f, Limit: -1})
			if err != nil {
				t.Fatal(err)
			}
			if got := names(p.Items); got != tc.want || p.Total != int64(len(p.Items)) {
				t.Fatalf("got %q (total %d), want %q", got, p.Total, tc.want)
			}
		})
	}
	bad := []store.Filter{
		c("password", store.OpEq, "x"),
		c("active", store.OpCo, true),
		c("active", store.OpEq, "yes"),
		c("userName", store.Op("xx"), "a"),
		store.ValuePath{Attr: "phones", F: c("value", store.OpEq, "1")},
		c("meta.created", store.OpEq, "not a time"),
	}
	for _, f := range bad {
		_, err := e.s.ListUsers(e.ctx, store.UserQuery{Filter: f, Limit: -1})
		wantErr(e.t, err, store.ErrInvalidFilter)
	}
	_, err := e.s.ListUsers(e.ctx, store.UserQuery{SortBy: "password", Limit: -1})
	wantErr(e.t, err, store.ErrInvalidFilter)
}

func testUserPaging(e *env) {
	t := e.t
	var all []directory.User
	for _, n := range []string{"d", "B", "a", "C", "e"} {
		all = append(all, e.createUser(directory.User{UserName: n, DisplayName: "same", Active: true}))
	}
	get := func(q store.UserQuery) (string, int64) {
		t.Helper()
		p, err := e.s.ListUsers(e.ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, u := range p.Items {
			out = append(out, u.UserName)
		}
		return strings.Join(out, ","), p.Total
	}
	tests := []struct {
		q     store.UserQuery
		want  string
		total int64
	}{
		{store.UserQuery{SortBy: "userName", Limit: -1}, "a,B,C,d,e", 5},
		{store.UserQuery{SortBy: "userName", SortDesc: true, Limit: -1}, "e,d,C,B,a", 5},
		{store.UserQuery{SortBy: "userName", Offset: 1, Limit: 2}, "B,C", 5},
		{store.UserQuery{SortBy: "userName", Offset: 4, Limit: 2}, "e", 5},
		{store.UserQuery{SortBy: "userName", Offset: 9, Limit: 2}, "", 5},
		{store.UserQuery{SortBy: "userName", Limit: 0}, "", 5},
	}
	for _, tc := range tests {
		if got, total := get(tc.q); got != tc.want || total != tc.total {
			t.Errorf("%+v: got %q total %d, want %q %d", tc.q, got, total, tc.want, tc.total)
		}
	}
	// Sorting by a field with ties falls back to id.
	ids := make([]string, len(all))
	for i, u := range all {
		ids[i] = u.ID
	}
	sort.Strings(ids)
	p, _ := e.s.ListUsers(e.ctx, store.UserQuery{SortBy: "displayName", Limit: -1})
	for i, u := range p.Items {
		if u.ID != ids[i] {
			t.Fatalf("tie order: got %s at %d, want %s", u.ID, i, ids[i])
		}
	}
	p, _ = e.s.ListUsers(e.ctx, store.UserQuery{Limit: -1})
	if p.Items[0].ID != ids[0] {
		t.Fatal("default order is not by id")
	}
}

func testGroups(e *env) {
	t := e.t
	g := directory.Group{Source: "scim:entra", SourceKey: "k1", ExternalID: "X1", DisplayName: "Admins", Attrs: []byte(`{"x":1}`)}
	e.mustUpdate(func(tx store.Tx) error { return tx.CreateGroup(e.ctx, &g) })
	if g.ID == "" || g.Version != 1 {
		t.Fatalf("group = %+v", g)
	}
	got, err := e.s.GetGroup(e.ctx, g.ID)
	if err != nil || got.DisplayName != "Admins" || got.SourceKey != "k1" || string(got.Attrs) != `{"x":1}` {
		t.Fatalf("GetGroup = %+v, %v", got, err)
	}
	if f, err := e.s.FindGroupBySourceKey(e.ctx, "scim:entra", "k1"); err != nil || f.ID != g.ID {
		t.Fatalf("FindGroupBySourceKey = %v %v", f.ID, err)
	}
	dup := directory.Group{Source: "scim:entra", DisplayName: "ADMINS"}
	wantErr(t, e.update(func(tx store.Tx) error { return tx.CreateGroup(e.ctx, &dup) }), store.ErrConflict)
	other := directory.Group{Source: "ldap:corp", DisplayName: "ADMINS"}
	e.mustUpdate(func(tx store.Tx) error { return tx.CreateGroup(e.ctx, &other) })
	// Update: no-op, change, stale version.
	n := len(e.events())
	same := got
	e.mustUpdate(func(tx store.Tx) error { return tx.UpdateGroup(e.ctx, &same, 1) })
	if len(e.events()) != n || same.Version != 1 {
		t.Fatal("no-op group update recorded an event")
	}
	got.DisplayName = "Admins 2"
	e.mustUpdate(func(tx store.Tx) error { return tx.UpdateGroup(e.ctx, &got, 1) })
	if got.Version != 2 {
		t.Fatalf("version = %d", got.Version)
	}
	got.DisplayName = "x"
	wantErr(t, e.update(func(tx store.Tx) error { return tx.UpdateGroup(e.ctx, &got, 1) }), store.ErrVersionMismatch)
	e.mustUpdate(func(tx store.Tx) error { return tx.DeleteGroup(e.ctx, g.ID) })
	del, _ := e.s.GetGroup(e.ctx, g.ID)
	if del.DeletedAt == nil {
		t.Fatal("group not deleted")
	}
	_, err = e.s.FindGroupBySourceKey(e.ctx, "scim:entra", "k1")
	wantErr(t, err, store.ErrNotFound)
	p, _ := e.s.ListGroups(e.ctx, store.GroupQuery{Limit: -1})
	if p.Total != 1 || p.Items[0].ID != other.ID {
		t.Fatalf("ListGroups = %+v", p)
	}
	// The name is free again in its source.
	again := directory.Group{Source: "scim:entra", DisplayName: "admins 2"}
	e.mustUpdate(func(tx store.Tx) error { return tx.CreateGroup(e.ctx, &again) })
	wantErr(t, e.update(func(tx store.Tx) error { return tx.DeleteGroup(e.ctx, "missing") }), store.ErrNotFound)
	acts := strings.Join(e.actions(), ",")
	if strings.Count(acts, "group.create") != 3 || strings.Count(acts, "group.update") != 1 || strings.Count(acts, "group.delete") != 1 {
		t.Fatalf("actions = %s", acts)
	}
}

func testGroupMembers(e *env) {
	t := e.t
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, e.createUser(user(fmt.Sprintf("u%d", i), "")).ID)
	}
	sorted := append([]string(nil), ids...)
	sort.Strings(sorted)
	g := directory.Group{Source: "s", DisplayName: "G"}
	e.mustUpdate(func(tx store.Tx) error { return tx.CreateGroup(e.ctx, &g) })
	count := func(action string) int {
		n := 0
		for _, a := range e.actions() {
			if a == action {
				n++
			}
		}
		return n
	}
	e.mustUpdate(func(tx store.Tx) error { return tx.AddMembers(e.ctx, g.ID, ids[:3]) })
	e.mustUpdate(func(tx store.Tx) error { return tx.AddMembers(e.ctx, g.ID, []string{ids[0], ids[1], ids[3], ids[3]}) })
	if c := count("group.member.add"); c != 4 {
		t.Fatalf("member.add events = %d, want 4 (idempotent adds record nothing)", c)
	}
	if n, _ := e.s.CountGroupMembers(e.ctx, g.ID); n != 4 {
		t.Fatalf("count = %d", n)
	}
	first, _ := e.s.ListGroupMembers(e.ctx, g.ID, "", 2)
	rest, _ := e.s.ListGroupMembers(e.ctx, g.ID, first[1], 10)
	if len(first) != 2 || first[0] >= first[1] || len(rest) != 2 || rest[0] <= first[1] {
		t.Fatalf("member pages %v %v", first, rest)
	}
	if ok, _ := e.s.IsGroupMember(e.ctx, g.ID, ids[3]); !ok {
		t.Fatal("IsGroupMember false")
	}
	if ok, _ := e.s.IsGroupMember(e.ctx, g.ID, ids[4]); ok {
		t.Fatal("IsGroupMember true for non-member")
	}
	if gs, _ := e.s.ListUserGroups(e.ctx, ids[0]); len(gs) != 1 || gs[0].ID != g.ID {
		t.Fatalf("ListUserGroups = %+v", gs)
	}
	e.mustUpdate(func(tx store.Tx) error { return tx.RemoveMembers(e.ctx, g.ID, []string{ids[0], ids[4]}) })
	e.mustUpdate(func(tx store.Tx) error { return tx.RemoveMembers(e.ctx, g.ID, []string{ids[0]}) })
	if c := count("group.member.remove"); c != 1 {
		t.Fatalf("member.remove events = %d, want 1", c)
	}
	e.mustUpdate(func(tx store.Tx) error { return tx.ReplaceMembers(e.ctx, g.ID, []string{ids[1], ids[4]}) })
	all, _ := e.s.ListGroupMembers(e.ctx, g.ID, "", 0)
	want := []string{ids[1], ids[4]}
	sort.Strings(want)
	if strings.Join(all, ",") != strings.Join(want, ",") {
		t.Fatalf("after replace %v, want %v", all, want)
	}
	if a, r := count("group.member.add"), count("group.member.remove"); a != 5 || r != 3 {
		t.Fatalf("after replace add=%d remove=%d", a, r)
	}
	wantErr(t, e.update(func(tx store.Tx) error { return tx.AddMembers(e.ctx, g.ID, []string{"nobody"}) }), store.ErrNotFound)
	wantErr(t, e.update(func(tx store.Tx) error { return tx.AddMembers(e.ctx, "nogroup", ids[:1]) }), store.ErrNotFound)
	// Deleting the group removes memberships.
	e.mustUpdate(func(tx store.Tx) error { return tx.DeleteGroup(e.ctx, g.ID) })
	if n, _ := e.s.CountGroupMembers(e.ctx, g.ID); n != 0 {
		t.Fatalf("members after delete = %d", n)
	}
}

func testGroupFiltersAndChildren(e *env) {
	t := e.t
	u := e.createUser(user("alice", ""))
	gs := map[string]*directory.Group{}
	for _, n := range []string{"Sales", "sales_eu", "Support", "Root"} {
		g := &directory.Group{Source: "s", DisplayName: n, ExternalID: "E-" + n}
		e.mustUpdate(func(tx store.Tx) error { return tx.CreateGroup(e.ctx, g) })
		gs[n] = g
	}
	e.mustUpdate(func(tx store.Tx) error { return tx.AddMembers(e.ctx, gs["Support"].ID, []string{u.ID}) })
	c := func(f store.Field, op store.Op, v any) store.Filter { return store.Cmp{Field: f, Op: op, Value: v} }
	tests := []struct {
		f    store.Filter
		want string
	}{
		{c("displayName", store.OpEq, "SALES"), "Sales"},
		{c("displayName", store.OpSw, "s"), "Sales,Support,sales_eu"},
		{c("displayName", store.OpCo, "S_E"), "sales_eu"},
		{c("externalId", store.OpEq, "e-sales"), ""},
		{c("externalId", store.OpEq, "E-Root"), "Root"},
		{store.ValuePath{Attr: "members", F: c("value", store.OpEq, u.ID)}, "Support"},
		{store.Not{F: store.ValuePath{Attr: "members", F: c("value", store.OpPr, nil)}}, "Root,Sales,sales_eu"},
		{c("meta.created", store.OpGe, gs["Sales"].CreatedAt), "Root,Sales,Support,sales_eu"},
	}
	for _, tc := range tests {
		p, err := e.s.ListGroups(e.ctx, store.GroupQuery{Filter: tc.f, Limit: -1, SortBy: "displayName"})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, g := range p.Items {
			got = append(got, g.DisplayName)
		}
		sort.Strings(got)
		if strings.Join(got, ",") != tc.want {
			t.Errorf("%+v: got %v, want %s", tc.f, got, tc.want)
		}
	}
	p, _ := e.s.ListGroups(e.ctx, store.GroupQuery{SortBy: "displayName", SortDesc: true, Offset: 1, Limit: 2})
	if p.Total != 4 || len(p.Items) != 2 || p.Items[0].DisplayName != "sales_eu" || p.Items[1].DisplayName != "Sales" {
		t.Fatalf("group page = %+v", p)
	}
	_, err := e.s.ListGroups(e.ctx, store.GroupQuery{Filter: c("userName", store.OpEq, "x")})
	wantErr(t, err, store.ErrInvalidFilter)
	// Children and cycles.
	root, sales, eu := gs["Root"].ID, gs["Sales"].ID, gs["sales_eu"].ID
	e.mustUpdate(func(tx store.Tx) error {
		if err := tx.AddGroupChild(e.ctx, root, sales); err != nil {
			return err
		}
		if err := tx.AddGroupChild(e.ctx, root, sales); err != nil { // idempotent
			return err
		}
		return tx.AddGroupChild(e.ctx, sales, eu)
	})
	if ch, _ := e.s.ListGroupChildren(e.ctx, root); len(ch) != 1 || ch[0] != sales {
		t.Fatalf("children = %v", ch)
	}
	wantErr(t, e.update(func(tx store.Tx) error { return tx.AddGroupChild(e.ctx, eu, root) }), store.ErrConflict)
	wantErr(t, e.update(func(tx store.Tx) error { return tx.AddGroupChild(e.ctx, eu, eu) }), store.ErrConflict)
	e.mustUpdate(func(tx store.Tx) error { return tx.RemoveGroupChild(e.ctx, root, sales) })
	e.mustUpdate(func(tx store.Tx) error { return tx.RemoveGroupChild(e.ctx, root, sales) })
	if ch, _ := e.s.ListGroupChildren(e.ctx, root); len(ch) != 0 {
		t.Fatalf("children after remove = %v", ch)
	}
	acts := strings.Join(e.actions(), ",")
	if strings.Count(acts, "group.child.add") != 2 || strings.Count(acts, "group.child.remove") != 1 {
		t.Fatalf("actions = %s", acts)
	}
}

func testFirmsOffices(e *env) {
	t := e.t
	f := directory.Firm{Number: "3856", Name: "Smith & Co", Type: directory.FirmLegalServicesProvider, Enabled: true}
	e.mustUpdate(func(tx store.Tx) error { return tx.PutFirm(e.ctx, &f) })
	n := len(e.events())
	same := f
	e.mustUpdate(func(tx store.Tx) error { return tx.PutFirm(e.ctx, &same) })
	if len(e.events()) != n || same.Version != 1 {
		t.Fatal("no-op PutFirm recorded an event")
	}
	f.Name = "Smith and Co"
	e.mustUpdate(func(tx store.Tx) error { return tx.PutFirm(e.ctx, &f) })
	got, err := e.s.GetFirm(e.ctx, "3856")
	if err != nil || got.Name != "Smith and Co" || got.Version != 2 || got.Type != directory.FirmLegalServicesProvider || !got.Enabled {
		t.Fatalf("GetFirm = %+v %v", got, err)
	}
	adv := directory.Firm{Number: "1000", Name: "Adv", Type: directory.FirmAdvocate, ParentNumber: "3856"}
	e.mustUpdate(func(tx store.Tx) error { return tx.PutFirm(e.ctx, &adv) })
	fs, _ := e.s.ListFirms(e.ctx)
	if len(fs) != 2 || fs[0].Number != "1000" || fs[0].ParentNumber != "3856" {
		t.Fatalf("ListFirms = %+v", fs)
	}
	_, err = e.s.GetFirm(e.ctx, "9")
	wantErr(t, err, store.ErrNotFound)
	o := directory.Office{Code: "0Q731M", FirmNumber: "3856", Address: []string{"1 High St", "Floor 2"}, City: "Leeds", Postcode: "LS1", Active: true}
	o2 := directory.Office{Code: "1A001L", FirmNumber: "1000", Active: false}
	e.mustUpdate(func(tx store.Tx) error {
		if err := tx.PutOffice(e.ctx, &o); err != nil {
			return err
		}
		return tx.PutOffice(e.ctx, &o2)
	})
	n = len(e.events())
	same2 := o
	e.mustUpdate(func(tx store.Tx) error { return tx.PutOffice(e.ctx, &same2) })
	if len(e.events()) != n {
		t.Fatal("no-op PutOffice recorded an event")
	}
	o.Active = false
	e.mustUpdate(func(tx store.Tx) error { return tx.PutOffice(e.ctx, &o) })
	g, err := e.s.GetOffice(e.ctx, "0Q731M")
	if err != nil || len(g.Address) != 2 || g.Address[1] != "Floor 2" || g.Active || g.Version != 2 {
		t.Fatalf("GetOffice = %+v %v", g, err)
	}
	if os, _ := e.s.ListOffices(e.ctx, "3856"); len(os) != 1 || os[0].Code != "0Q731M" {
		t.Fatalf("ListOffices(3856) = %+v", os)
	}
	if os, _ := e.s.ListOffices(e.ctx, ""); len(os) != 2 {
		t.Fatalf("ListOffices() = %+v", os)
	}
	_, err = e.s.GetOffice(e.ctx, "nope")
	wantErr(t, err, store.ErrNotFound)
	// Memberships.
	u := e.createUser(user("alice", ""))
	m := directory.FirmMembership{UserID: u.ID, FirmNumber: "3856", Source: "cwa"}
	e.mustUpdate(func(tx store.Tx) error { return tx.PutFirmMembership(e.ctx, m) })
	n = len(e.events())
	e.mustUpdate(func(tx store.Tx) error { return tx.PutFirmMembership(e.ctx, m) })
	if len(e.events()) != n {
		t.Fatal("no-op PutFirmMembership recorded an event")
	}
	e.mustUpdate(func(tx store.Tx) error {
		return tx.PutFirmMembership(e.ctx, directory.FirmMembership{UserID: u.ID, FirmNumber: "1000", Source: "manual"})
	})
	if ms, _ := e.s.ListFirmMemberships(e.ctx, u.ID); len(ms) != 2 || ms[0].FirmNumber != "1000" || ms[1].Source != "cwa" {
		t.Fatalf("memberships = %+v", ms)
	}
	e.mustUpdate(func(tx store.Tx) error { return tx.RemoveFirmMembership(e.ctx, u.ID, "1000") })
	e.mustUpdate(func(tx store.Tx) error { return tx.RemoveFirmMembership(e.ctx, u.ID, "1000") })
	if ms, _ := e.s.ListFirmMemberships(e.ctx, u.ID); len(ms) != 1 {
		t.Fatalf("memberships after remove = %+v", ms)
	}
	acts := strings.Join(e.actions(), ",")
	if strings.Count(acts, "firm.put") != 3 || strings.Count(acts, "office.put") != 3 ||
		strings.Count(acts, "firm_membership.put") != 2 || strings.Count(acts, "firm_membership.remove") != 1 {
		t.Fatalf("actions = %s", acts)
	}
}

func testLegacyLogins(e *env) {
	t := e.t
	l := directory.LegacyLogin{Login: "JSMITH", FirmNumber: "3856", Email: "J.Smith@Example.org", OfficeCodes: []string{"B", "A", "A"}}
	e.mustUpdate(func(tx store.Tx) error { return tx.PutLegacyLogin(e.ctx, &l) })
	if strings.Join(l.OfficeCodes, ",") != "A,B" || l.Version != 1 {
		t.Fatalf("normalised login = %+v", l)
	}
	n := len(e.events())
	same := l
	e.mustUpdate(func(tx store.Tx) error { return tx.PutLegacyLogin(e.ctx, &same) })
	if len(e.events()) != n {
		t.Fatal("no-op PutLegacyLogin recorded an event")
	}
	l.UserID = "u-1"
	e.mustUpdate(func(tx store.Tx) error { return tx.PutLegacyLogin(e.ctx, &l) })
	l2 := directory.LegacyLogin{Login: "OTHER", FirmNumber: "1000"}
	e.mustUpdate(func(tx store.Tx) error { return tx.PutLegacyLogin(e.ctx, &l2) })
	got, err := e.s.GetLegacyLogin(e.ctx, "JSMITH")
	if err != nil || got.Version != 2 || got.UserID != "u-1" || len(got.OfficeCodes) != 2 {
		t.Fatalf("GetLegacyLogin = %+v %v", got, err)
	}
	tests := []struct {
		q    store.LegacyLoginQuery
		want int
	}{
		{store.LegacyLoginQuery{}, 2},
		{store.LegacyLoginQuery{FirmNumber: "3856"}, 1},
		{store.LegacyLoginQuery{Email: "j.smith@EXAMPLE.org"}, 1},
		{store.LegacyLoginQuery{UserID: "u-1"}, 1},
		{store.LegacyLoginQuery{FirmNumber: "1000", UserID: "u-1"}, 0},
	}
	for _, tc := range tests {
		if ls, err := e.s.ListLegacyLogins(e.ctx, tc.q); err != nil || len(ls) != tc.want {
			t.Errorf("%+v: %d logins, want %d (%v)", tc.q, len(ls), tc.want, err)
		}
	}
	_, err = e.s.GetLegacyLogin(e.ctx, "nope")
	wantErr(t, err, store.ErrNotFound)
}

func testGrants(e *env) {
	t := e.t
	u := e.createUser(user("alice", ""))
	v := e.createUser(user("bob", ""))
	g := directory.Grant{UserID: u.ID, FirmNumber: "3856", Service: "ccms", Role: "office-manager", Offices: []string{"B", "A"},
		Provenance: []directory.Provenance{{Kind: directory.ProvRule, Ref: "r1", Detail: "group X"}, {Kind: directory.ProvManual, Ref: "admin:z"}}}
	e.mustUpdate(func(tx store.Tx) error { return tx.PutGrant(e.ctx, &g) })
	got, err := e.s.GetGrant(e.ctx, g.Key())
	if err != nil || got.ID == "" || got.Version != 1 || strings.Join(got.Offices, ",") != "A,B" || len(got.Provenance) != 2 ||
		got.Provenance[0].Kind != directory.ProvManual || got.Provenance[1].Detail != "group X" {
		t.Fatalf("GetGrant = %+v %v", got, err)
	}
	n := len(e.events())
	same := g
	same.Provenance = []directory.Provenance{g.Provenance[1], g.Provenance[0]} // order does not matter
	e.mustUpdate(func(tx store.Tx) error { return tx.PutGrant(e.ctx, &same) })
	if len(e.events()) != n || same.Version != 1 || same.ID != got.ID {
		t.Fatal("no-op PutGrant recorded an event")
	}
	g.AllOffices = true
	g.Provenance = []directory.Provenance{{Kind: directory.ProvSource, Ref: "cwa"}}
	e.mustUpdate(func(tx store.Tx) error { return tx.PutGrant(e.ctx, &g) })
	got, _ = e.s.GetGrant(e.ctx, g.Key())
	if !got.AllOffices || got.Offices != nil || got.Version != 2 || len(got.Provenance) != 1 || got.Provenance[0].Ref != "cwa" {
		t.Fatalf("updated grant = %+v", got)
	}
	other := []directory.Grant{
		{UserID: u.ID, FirmNumber: "3856", Service: "crime-apply", Role: "access", AllOffices: true},
		{UserID: v.ID, FirmNumber: "1000", Service: "ccms", Role: "office-manager", Offices: []string{"X"}},
	}
	for i := range other {
		e.mustUpdate(func(tx store.Tx) error { return tx.PutGrant(e.ctx, &other[i]) })
	}
	tests := []struct {
		q    store.GrantQuery
		want int
	}{
		{store.GrantQuery{}, 3},
		{store.GrantQuery{UserID: u.ID}, 2},
		{store.GrantQuery{FirmNumber: "1000"}, 1},
		{store.GrantQuery{Service: "ccms", Role: "office-manager"}, 2},
		{store.GrantQuery{UserID: v.ID, Service: "crime-apply"}, 0},
	}
	for _, tc := range tests {
		if gs, err := e.s.ListGrants(e.ctx, tc.q); err != nil || len(gs) != tc.want {
			t.Errorf("%+v: %d grants, want %d (%v)", tc.q, len(gs), tc.want, err)
		}
	}
	e.mustUpdate(func(tx store.Tx) error { return tx.DeleteGrant(e.ctx, g.Key()) })
	_, err = e.s.GetGrant(e.ctx, g.Key())
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, e.update(func(tx store.Tx) error { return tx.DeleteGrant(e.ctx, g.Key()) }), store.ErrNotFound)
	bad := directory.Grant{UserID: "no-such-user", FirmNumber: "1", Service: "s", Role: "r"}
	wantErr(t, e.update(func(tx store.Tx) error { return tx.PutGrant(e.ctx, &bad) }), store.ErrNotFound)
	evs := e.events()
	var put, del int
	for _, ev := range evs {
		switch ev.Action {
		case "grant.put":
			put++
			if ev.ObjectType != "grant" {
				t.Fatalf("grant event object type %q", ev.ObjectType)
			}
		case "grant.delete":
			del++
			if !strings.Contains(string(ev.Before), `"kind":"source"`) {
				t.Fatalf("grant.delete before = %s", ev.Before)
			}
		}
	}
	if put != 4 || del != 1 {
		t.Fatalf("grant events put=%d delete=%d", put, del)
	}
}

func testRuns(e *env) {
	t := e.t
	var runs []directory.Run
	for i, job := range []string{"ldap-sync", "cwa-sync", "ldap-sync"} {
		e.clock.Advance(time.Minute)
		r := directory.Run{Job: job, Trigger: "schedule"}
		if i == 2 {
			r.Trigger = "manual"
		}
		e.mustUpdate(func(tx store.Tx) error { return tx.CreateRun(e.ctx, &r) })
		runs = append(runs, r)
	}
	r := runs[0]
	if r.ID == "" || r.Status != directory.RunRunning || !r.StartedAt.Equal(e.clock.Now().Add(-2*time.Minute).Truncate(time.Microsecond)) {
		t.Fatalf("created run = %+v", r)
	}
	fin := e.clock.Now()
	r.Status, r.FinishedAt, r.Counts, r.PlanHash, r.Plan = directory.RunHeld, &fin, map[string]int64{"created": 3}, "abc", []byte(`{"ops": []}`)
	e.mustUpdate(func(tx store.Tx) error { return tx.UpdateRun(e.ctx, &r) })
	n := len(e.events())
	e.mustUpdate(func(tx store.Tx) error { return tx.UpdateRun(e.ctx, &r) })
	if len(e.events()) != n {
		t.Fatal("no-op UpdateRun recorded an event")
	}
	got, err := e.s.GetRun(e.ctx, r.ID)
	if err != nil || got.Status != directory.RunHeld || got.FinishedAt == nil || got.Counts["created"] != 3 || string(got.Plan) != `{"ops":[]}` || got.Trigger != "schedule" {
		t.Fatalf("GetRun = %+v %v", got, err)
	}
	list := func(q store.RunQuery) string {
		rs, err := e.s.ListRuns(e.ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range rs {
			ids = append(ids, r.ID)
		}
		return strings.Join(ids, ",")
	}
	if got, want := list(store.RunQuery{}), runs[2].ID+","+runs[1].ID+","+runs[0].ID; got != want {
		t.Fatalf("ListRuns newest first = %s, want %s", got, want)
	}
	if got := list(store.RunQuery{Job: "ldap-sync", Limit: 1}); got != runs[2].ID {
		t.Fatalf("ListRuns(job, limit) = %s", got)
	}
	if got := list(store.RunQuery{Before: runs[2].StartedAt}); got != runs[1].ID+","+runs[0].ID {
		t.Fatalf("ListRuns(before) = %s", got)
	}
	if got := list(store.RunQuery{Status: directory.RunHeld}); got != runs[0].ID {
		t.Fatalf("ListRuns(status) = %s", got)
	}
	_, err = e.s.GetRun(e.ctx, "nope")
	wantErr(t, err, store.ErrNotFound)
	// Items: not audited.
	n = len(e.events())
	e.mustUpdate(func(tx store.Tx) error {
		if err := tx.AddRunItems(e.ctx, []directory.RunItem{
			{RunID: r.ID, Action: "created", ObjectType: "user", ObjectID: "u1", After: []byte(`{"a":1}`)},
			{RunID: r.ID, Action: "gone", ObjectType: "user", ObjectID: "u2", Reason: "not in source"},
		}); err != nil {
			return err
		}
		return tx.AddRunItems(e.ctx, []directory.RunItem{{RunID: r.ID, Action: "created", ObjectType: "user", ObjectID: "u3"}})
	})
	if len(e.events()) != n {
		t.Fatal("AddRunItems recorded audit events")
	}
	// Items of a run that does not exist are refused, and nothing of the
	// transaction is kept (PostgreSQL has no foreign key here since its
	// migration 0052: the store checks).
	err = e.update(func(tx store.Tx) error {
		if err := tx.SetCursor(e.ctx, "run-items-probe", "x"); err != nil {
			return err
		}
		return tx.AddRunItems(e.ctx, []directory.RunItem{{RunID: "no-such-run", Action: "created", ObjectType: "user", ObjectID: "u9"}})
	})
	wantErr(t, err, store.ErrNotFound)
	if !strings.Contains(err.Error(), `"no-such-run"`) {
		t.Fatalf("error %q does not name the run", err)
	}
	if _, err := e.s.GetCursor(e.ctx, "run-items-probe"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the refused transaction left its cursor: %v", err)
	}
	items, _ := e.s.ListRunItems(e.ctx, store.RunItemQuery{RunID: r.ID})
	if len(items) != 3 || items[0].Seq != 1 || items[2].Seq != 3 || items[2].ObjectID != "u3" || string(items[0].After) != `{"a":1}` || items[1].Reason != "not in source" {
		t.Fatalf("items = %+v", items)
	}
	items, _ = e.s.ListRunItems(e.ctx, store.RunItemQuery{RunID: r.ID, Action: "created", AfterSeq: 1, Limit: 5})
	if len(items) != 1 || items[0].ObjectID != "u3" {
		t.Fatalf("filtered items = %+v", items)
	}
	acts := strings.Join(e.actions(), ",")
	if strings.Count(acts, "run.create") != 3 || strings.Count(acts, "run.update") != 1 {
		t.Fatalf("actions = %s", acts)
	}
}

func testCursors(e *env) {
	t := e.t
	_, err := e.s.GetCursor(e.ctx, "ldap:corp")
	wantErr(t, err, store.ErrNotFound)
	e.mustUpdate(func(tx store.Tx) error { return tx.SetCursor(e.ctx, "ldap:corp", "csn-1") })
	e.mustUpdate(func(tx store.Tx) error { return tx.SetCursor(e.ctx, "ldap:corp", "csn-1") })
	e.mustUpdate(func(tx store.Tx) error { return tx.SetCursor(e.ctx, "ldap:corp", "csn-2") })
	if v, err := e.s.GetCursor(e.ctx, "ldap:corp"); err != nil || v != "csn-2" {
		t.Fatalf("GetCursor = %q %v", v, err)
	}
	evs := e.events()
	if len(evs) != 2 || evs[1].Action != "cursor.set" || evs[1].ObjectID != "ldap:corp" || !strings.Contains(string(evs[1].Before), "csn-1") {
		t.Fatalf("cursor events = %+v", evs)
	}
}

func testLeases(e *env) {
	t := e.t
	acq := func(holder string, ttl time.Duration) bool {
		t.Helper()
		ok, err := e.s.AcquireLease(e.ctx, "scheduler", holder, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !acq("a", time.Minute) {
		t.Fatal("a could not take a free lease")
	}
	if acq("b", time.Minute) {
		t.Fatal("b took a's live lease")
	}
	e.clock.Advance(50 * time.Second)
	if !acq("a", time.Minute) { // renew until now+60s
		t.Fatal("a could not renew")
	}
	e.clock.Advance(50 * time.Second) // 100s: a's original lease would have expired, the renewal has not
	if acq("b", time.Minute) {
		t.Fatal("b took a renewed lease")
	}
	e.clock.Advance(11 * time.Second)
	if !acq("b", time.Minute) {
		t.Fatal("b could not take an expired lease")
	}
	if acq("a", time.Minute) {
		t.Fatal("a took b's lease back")
	}
	if err := e.s.ReleaseLease(e.ctx, "scheduler", "a"); err != nil { // not the holder: no effect
		t.Fatal(err)
	}
	if acq("a", time.Minute) {
		t.Fatal("a's release freed b's lease")
	}
	if err := e.s.ReleaseLease(e.ctx, "scheduler", "b"); err != nil {
		t.Fatal(err)
	}
	if !acq("a", time.Minute) {
		t.Fatal("a could not take a released lease")
	}
	if ok, _ := e.s.AcquireLease(e.ctx, "other", "b", time.Minute); !ok {
		t.Fatal("leases are not independent by name")
	}
	if len(e.events()) != 0 {
		t.Fatal("leases were audited")
	}
}

func testAuditEvents(e *env) {
	t := e.t
	m := audit.Meta{Actor: "scim:entra", RunID: "run-9", RequestID: "req-9"}
	var u directory.User
	err := e.s.Update(e.ctx, m, func(ctx context.Context, tx store.Tx) error {
		u = user("alice", "alice@example.org")
		if err := tx.CreateUser(ctx, &u); err != nil {
			return err
		}
		return tx.Record(ctx, "login.success", "user", u.ID, nil, map[string]string{"ip": "10.0.0.1"})
	})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour)
	e.mustUpdate(func(tx store.Tx) error { u.DisplayName = "A"; return tx.UpdateUser(e.ctx, &u, 0) })
	evs := e.events()
	if len(evs) != 3 {
		t.Fatalf("events = %+v", evs)
	}
	c := evs[0]
	if c.Seq != 1 || c.Action != "user.create" || c.ObjectType != "user" || c.ObjectID != u.ID || c.Actor != "scim:entra" ||
		c.RunID != "run-9" || c.RequestID != "req-9" || c.Before != nil || !strings.Contains(string(c.After), `"userName":"alice"`) ||
		!c.Time.Equal(e.clock.Now().Add(-time.Hour).Truncate(time.Microsecond)) || c.PrevHash != audit.GenesisHash {
		t.Fatalf("create event = %+v", c)
	}
	if evs[1].Action != "login.success" || string(evs[1].After) != `{"ip":"10.0.0.1"}` || evs[1].PrevHash != c.Hash {
		t.Fatalf("record event = %+v", evs[1])
	}
	if evs[2].Actor != meta.Actor || evs[2].RunID != meta.RunID || evs[2].Seq != 3 {
		t.Fatalf("update event = %+v", evs[2])
	}
	tests := []struct {
		f    store.AuditFilter
		want string
	}{
		{store.AuditFilter{Actor: "scim:entra"}, "1,2"},
		{store.AuditFilter{Action: "user.update"}, "3"},
		{store.AuditFilter{ObjectID: u.ID, AfterSeq: 1}, "2,3"},
		{store.AuditFilter{Limit: 2}, "1,2"},
		{store.AuditFilter{Since: e.clock.Now()}, "3"},
		{store.AuditFilter{Until: e.clock.Now()}, "1,2"},
		{store.AuditFilter{ObjectID: "nobody"}, ""},
	}
	for _, tc := range tests {
		var got []string
		if err := e.s.Audit(e.ctx, tc.f, func(ev audit.Event) error { got = append(got, fmt.Sprint(ev.Seq)); return nil }); err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, ",") != tc.want {
			t.Errorf("%+v: got %v, want %s", tc.f, got, tc.want)
		}
	}
	stop := errors.New("stop")
	if err := e.s.Audit(e.ctx, store.AuditFilter{}, func(audit.Event) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("Audit callback error = %v", err)
	}
	v, err := e.s.VerifyAudit(e.ctx)
	if err != nil || !v.OK() || v.Checked != 3 {
		t.Fatalf("VerifyAudit = %+v %v", v, err)
	}
	// An update without an actor is refused.
	err = e.s.Update(e.ctx, audit.Meta{}, func(ctx context.Context, tx store.Tx) error { return nil })
	if err == nil {
		t.Fatal("Update without actor succeeded")
	}
	// An empty transaction writes nothing.
	e.mustUpdate(func(tx store.Tx) error { return nil })
	if len(e.events()) != 3 {
		t.Fatal("empty transaction wrote events")
	}
}

func testUpdateRollback(e *env) {
	boom := errors.New("boom")
	err := e.update(func(tx store.Tx) error {
		u := user("alice", "")
		if err := tx.CreateUser(e.ctx, &u); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		e.t.Fatalf("error = %v", err)
	}
	_, err = e.s.GetUserByUserName(e.ctx, "alice")
	wantErr(e.t, err, store.ErrNotFound)
	if len(e.events()) != 0 {
		e.t.Fatal("rolled-back transaction left audit events")
	}
}

func testFailedAuditRollsBack(e *env) {
	t := e.t
	e.createUser(user("before", ""))
	switch e.h.Dialect() {
	case "sqlite":
		e.raw(`CREATE TRIGGER inject_fail BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'injected audit failure'); END`)
	case "postgres":
		e.raw(`CREATE FUNCTION inject_fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected audit failure'; END; $$;
CREATE TRIGGER inject_fail BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION inject_fail();`)
	default:
		t.Fatalf("unknown dialect %q", e.h.Dialect())
	}
	err := e.update(func(tx store.Tx) error {
		u := user("alice", "")
		if err := tx.CreateUser(e.ctx, &u); err != nil {
			return err
		}
		f := directory.Firm{Number: "1", Name: "F", Type: directory.FirmChambers}
		return tx.PutFirm(e.ctx, &f)
	})
	if err == nil || !strings.Contains(err.Error(), "audit") {
		t.Fatalf("error = %v, want an audit write failure", err)
	}
	if e.h.Dialect() == "sqlite" {
		e.raw(`DROP TRIGGER inject_fail`)
	} else {
		e.raw(`DROP TRIGGER inject_fail ON audit_events`)
	}
	_, err = e.s.GetUserByUserName(e.ctx, "alice")
	wantErr(t, err, store.ErrNotFound)
	_, err = e.s.GetFirm(e.ctx, "1")
	wantErr(t, err, store.ErrNotFound)
	// The chain continues intact after the failure.
	e.createUser(user("after", ""))
	v, err := e.s.VerifyAudit(e.ctx)
	if err != nil || !v.OK() || v.Checked != 2 {
		t.Fatalf("VerifyAudit = %+v %v", v, err)
	}
}

func testAppendOnly(e *env) {
	e.createUser(user("alice", ""))
	for _, q := range []string{
		`UPDATE audit_events SET actor = 'x' WHERE seq = 1`,
		`DELETE FROM audit_events WHERE seq = 1`,
	} {
		if err := e.h.TestingExecRaw(e.ctx, q); err == nil {
			e.t.Fatalf("%q succeeded on the append-only audit table", q)
		}
	}
	if evs := e.events(); len(evs) != 1 || evs[0].Actor != meta.Actor {
		e.t.Fatalf("events = %+v", evs)
	}
}

func (e *env) dropAppendOnly() {
	if e.h.Dialect() == "sqlite" {
		e.raw(`DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete`)
	} else {
		e.raw(`DROP TRIGGER audit_events_no_update ON audit_events`)
	}
}

func (e *env) threeEvents() {
	for _, n := range []string{"a", "b", "c"} {
		e.createUser(user(n, ""))
	}
	if v, err := e.s.VerifyAudit(e.ctx); err != nil || !v.OK() {
		e.t.Fatalf("VerifyAudit before tampering = %+v %v", v, err)
	}
}

func wantProblem(t *testing.T, v *audit.Verifier, seq int64, reason string) {
	t.Helper()
	for _, p := range v.Problems {
		if p.Seq == seq && strings.Contains(p.Reason, reason) {
			return
		}
	}
	t.Fatalf("problems %v lack event %d %q", v.Problems, seq, reason)
}

func testTamperEdit(e *env) {
	e.threeEvents()
	e.dropAppendOnly()
	e.raw(`UPDATE audit_events SET after_json = '{"userName":"mallory"}' WHERE seq = 2`)
	v, err := e.s.VerifyAudit(e.ctx)
	if err != nil || v.OK() {
		e.t.Fatalf("edited event not detected: %+v %v", v, err)
	}
	wantProblem(e.t, v, 2, "hash mismatch")
}

func testTamperDelete(e *env) {
	e.threeEvents()
	e.dropAppendOnly()
	e.raw(`DELETE FROM audit_events WHERE seq = 2`)
	v, err := e.s.VerifyAudit(e.ctx)
	if err != nil || v.OK() {
		e.t.Fatalf("deleted event not detected: %+v %v", v, err)
	}
	wantProblem(e.t, v, 3, "sequence gap")
	// Deleting the newest event leaves a consistent prefix: the chain head catches it.
	e.raw(`DELETE FROM audit_events WHERE seq = 3`)
	v, err = e.s.VerifyAudit(e.ctx)
	if err != nil || v.OK() {
		e.t.Fatalf("deleted tail not detected: %+v %v", v, err)
	}
	wantProblem(e.t, v, 3, "chain head")
}

func testConcurrentWriters(e *env) {
	const writers, each = 4, 8
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				err := e.s.Update(e.ctx, audit.Meta{Actor: fmt.Sprintf("w%d", w)}, func(ctx context.Context, tx store.Tx) error {
					u := user(fmt.Sprintf("w%d-%d", w, i), "")
					if err := tx.CreateUser(ctx, &u); err != nil {
						return err
					}
					return tx.SetCursor(ctx, "shared", u.UserName)
				})
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	// A verifier running beside the writers never sees a broken chain.
	done := make(chan struct{})
	verified := make(chan error, 1)
	go func() {
		for {
			v, err := e.s.VerifyAudit(e.ctx)
			if err == nil && !v.OK() {
				err = fmt.Errorf("problems %v", v.Problems)
			}
			if err != nil {
				verified <- err
				return
			}
			select {
			case <-done:
				verified <- nil
				return
			default:
			}
		}
	}()
	wg.Wait()
	close(done)
	if err := <-verified; err != nil {
		e.t.Fatalf("VerifyAudit during concurrent writes: %v", err)
	}
	close(errs)
	for err := range errs {
		e.t.Fatalf("concurrent update: %v", err)
	}
	v, err := e.s.VerifyAudit(e.ctx)
	if err != nil || !v.OK() || v.Checked != 2*writers*each {
		e.t.Fatalf("VerifyAudit after concurrent writes = checked %d problems %v err %v", v.Checked, v.Problems, err)
	}
}

// testConcurrentSameUserName races creates of one userName: exactly one
// wins, the others get ErrConflict (from the check or the unique index).
func testConcurrentSameUserName(e *env) {
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.update(func(tx store.Tx) error {
				u := user("SameName", fmt.Sprintf("x%d@example.org", i))
				if i%2 == 1 {
					u.UserName = "samename"
				}
				return tx.CreateUser(e.ctx, &u)
			})
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, store.ErrConflict):
		default:
			e.t.Fatalf("unexpected error: %v", err)
		}
	}
	p, _ := e.s.ListUsers(e.ctx, store.UserQuery{Limit: -1})
	if ok != 1 || p.Total != 1 {
		e.t.Fatalf("%d creates succeeded, %d users stored; want 1", ok, p.Total)
	}
	if v, err := e.s.VerifyAudit(e.ctx); err != nil || !v.OK() || v.Checked != 1 {
		e.t.Fatalf("VerifyAudit = %+v %v", v, err)
	}
}
