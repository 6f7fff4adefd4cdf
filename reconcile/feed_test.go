package reconcile

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

type recordingQueue struct {
	mu  sync.Mutex
	ids []string
}

func (q *recordingQueue) Enqueue(_ context.Context, ids ...string) {
	q.mu.Lock()
	q.ids = append(q.ids, ids...)
	q.mu.Unlock()
}

func (q *recordingQueue) take() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.ids
	q.ids = nil
	sort.Strings(out)
	return slices.Compact(out)
}

// failingAudit makes the next Audit read fail.
type failingAudit struct {
	store.Store
	fail bool
}

func (f *failingAudit) Audit(ctx context.Context, fl store.AuditFilter, fn func(audit.Event) error) error {
	if f.fail {
		f.fail = false
		return errors.New("connection reset")
	}
	return f.Store.Audit(ctx, fl, fn)
}

// TestFeedEnqueuesUsersChangedByAnySource: changes written by LDAP and CWA
// (and any other writer) reach the reconcile queue through the audit log;
// reconcile's own writes do not; a failed read loses nothing; a deleted
// group or a big change asks for a full reconcile.
func TestFeedEnqueuesUsersChangedByAnySource(t *testing.T) {
	forEachStore(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		sd := newSeed(t, s)
		alice := sd.user(t, "alice@smith.example", "3856", "", "Team A")
		bob := sd.user(t, "bob@smith.example", "3856", "")
		carol := sd.user(t, "carol@jones.example", "4000", "")
		q := &recordingQueue{}
		fs := &failingAudit{Store: s}
		fulls := 0
		feed := NewFeed(fs, q, FeedOptions{Batch: 3, FullThreshold: 2, RequestFull: func(context.Context) error { fulls++; return nil }})
		if err := feed.Start(ctx); err != nil {
			t.Fatal(err)
		}
		drain := func() {
			t.Helper()
			for {
				n, err := feed.Poll(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if n < 3 {
					return
				}
			}
		}
		as := func(actor string, fn func(ctx context.Context, tx store.Tx) error) {
			t.Helper()
			if err := s.Update(ctx, audit.Meta{Actor: actor}, fn); err != nil {
				t.Fatal(err)
			}
		}
		drain()
		if got := q.take(); len(got) != 0 || fulls != 0 {
			t.Fatalf("events before Start were followed: %v", got)
		}

		tests := []struct {
			name   string
			actor  string
			change func(ctx context.Context, tx store.Tx) error
			want   []string
			full   bool
		}{
			{"LDAP adds a member", "ldap:corp", func(ctx context.Context, tx store.Tx) error {
				return tx.AddMembers(ctx, sd.groups["LAA Crime"], []string{bob})
			}, []string{bob}, false},
			{"CWA links a legacy login", "cwa", func(ctx context.Context, tx store.Tx) error {
				return tx.PutLegacyLogin(ctx, &directory.LegacyLogin{Login: "BOB1", FirmNumber: "3856", UserID: bob, OfficeCodes: []string{"0Q731M"}})
			}, []string{bob}, false},
			{"CWA closes an office: every user of its firm", "cwa", func(ctx context.Context, tx store.Tx) error {
				o, err := tx.GetOffice(ctx, "4C000A")
				if err != nil {
					return err
				}
				o.Active = false
				return tx.PutOffice(ctx, &o)
			}, []string{carol}, false},
			{"a source marks a link gone", "scim:entra", func(ctx context.Context, tx store.Tx) error {
				return tx.MarkLinkGone(ctx, "scim:entra", "ext-carol@jones.example")
			}, []string{carol}, false},
			{"LDAP nests a group: the child's members", "ldap:corp", func(ctx context.Context, tx store.Tx) error {
				return tx.AddGroupChild(ctx, sd.groups["LAA Crime"], sd.groups["Team A"])
			}, []string{alice}, false},
			{"an admin grants by hand", "admin:support", func(ctx context.Context, tx store.Tx) error {
				return tx.PutGrant(ctx, &directory.Grant{UserID: alice, FirmNumber: "3856", Service: "ccms", Role: "bill-preparation",
					AllOffices: true, Provenance: []directory.Provenance{{Kind: directory.ProvManual, Ref: "admin:support"}}})
			}, []string{alice}, false},
			{"reconcile's own writes are not followed", audit.ActorReconcile, func(ctx context.Context, tx store.Tx) error {
				return tx.PutGrant(ctx, &directory.Grant{UserID: bob, FirmNumber: "3856", Service: "crime-apply", Role: "access",
					AllOffices: true, Provenance: []directory.Provenance{{Kind: directory.ProvRule, Ref: "r"}}})
			}, nil, false},
			{"a deleted group asks for a full reconcile", "ldap:corp", func(ctx context.Context, tx store.Tx) error {
				return tx.DeleteGroup(ctx, sd.groups["LAA Counsel Billing"])
			}, nil, true},
			{"more users than the threshold: a full reconcile", "ldap:corp", func(ctx context.Context, tx store.Tx) error {
				return tx.AddMembers(ctx, sd.groups["LAA CCMS Supervisors"], []string{alice, bob, carol})
			}, nil, true},
		}
		for _, tt := range tests {
			fulls = 0
			as(tt.actor, tt.change)
			drain()
			got := q.take()
			if !slices.Equal(got, tt.want) || (fulls > 0) != tt.full {
				t.Errorf("%s: enqueued %v, full %d; want %v, full %v", tt.name, got, fulls, tt.want, tt.full)
			}
		}

		// a failed read is retried from the same place
		as("ldap:corp", func(ctx context.Context, tx store.Tx) error {
			return tx.AddMembers(ctx, sd.groups["LAA Crime"], []string{carol})
		})
		fs.fail = true
		if _, err := feed.Poll(ctx); err == nil {
			t.Fatal("a failed audit read reported success")
		}
		drain()
		if got := q.take(); !slices.Equal(got, []string{carol}) {
			t.Errorf("after a failed read: %v, want [%s]", got, carol)
		}
	})
}

// TestFeedDrivesTheWorker: an LDAP-made change, with no direct enqueue,
// becomes a grant through feed and worker.
func TestFeedDrivesTheWorker(t *testing.T) {
	s := openSQLite(t)
	ctx := context.Background()
	sd := newSeed(t, s)
	u := sd.user(t, "erin@smith.example", "3856", "")
	batches := make(chan error, 10)
	w := NewWorker(New(s, launchEngine(t), Options{}), WorkerOptions{OnBatch: func(_ []string, err error) { batches <- err }})
	feed := NewFeed(s, w, FeedOptions{})
	if err := feed.Start(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = w.Run(wctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := s.Update(ctx, audit.Meta{Actor: "ldap:corp"}, func(ctx context.Context, tx store.Tx) error {
		return tx.AddMembers(ctx, sd.groups["LAA Crime"], []string{u})
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := feed.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-batches:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the worker never reconciled the user")
	}
	if g := grantsOf(t, s, u); len(g) != 2 {
		t.Fatalf("grants after an LDAP change: %v", g)
	}
}

// TestQuarantineIsReportedInTheAuditLog: the worker's quarantine hook writes
// one audit event for the user with the last error.
func TestQuarantineIsReportedInTheAuditLog(t *testing.T) {
	s := openSQLite(t)
	ctx := context.Background()
	sd := newSeed(t, s)
	u := sd.user(t, "frank@smith.example", "3856", "")
	QuarantineRecorder(s, 5, nil)(u, errors.New("read grants: connection reset"))
	var evs []audit.Event
	if err := s.Audit(ctx, store.AuditFilter{Action: ActionQuarantine}, func(e audit.Event) error { evs = append(evs, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].ObjectID != u || evs[0].Actor != audit.ActorReconcile ||
		!strings.Contains(string(evs[0].After), "connection reset") || !strings.Contains(string(evs[0].After), `"failures":5`) {
		t.Fatalf("quarantine events %+v", evs)
	}
}

// flakyStore fails or truncates the bulk reads of a full run.
type flakyStore struct {
	store.Store
	failGroups bool
	dropLast   bool
}

func (f *flakyStore) ListGroupMembershipsInRange(ctx context.Context, r store.UserRange) ([]store.GroupMembership, error) {
	if f.failGroups {
		return nil, errors.New("connection reset by peer")
	}
	return f.Store.ListGroupMembershipsInRange(ctx, r)
}

func (f *flakyStore) ListUsersAfter(ctx context.Context, after string, limit int) ([]directory.User, error) {
	us, err := f.Store.ListUsersAfter(ctx, after, limit)
	if f.dropLast && len(us) > 0 {
		us = us[:len(us)-1] // a short page, as from a cut-off read
	}
	return us, err
}

// TestFullRunAbortsOnFailedOrShortReads: a failed bulk read, or fewer users
// read than the store counts, aborts a full run before anything is planned
// or written: a transient error is never taken for "gone".
func TestFullRunAbortsOnFailedOrShortReads(t *testing.T) {
	s := openSQLite(t)
	ctx := context.Background()
	sd := newSeed(t, s)
	for _, n := range []string{"g1@smith.example", "g2@smith.example", "g3@smith.example"} {
		sd.user(t, n, "3856", "", "LAA Crime")
	}
	if rep, err := New(s, launchEngine(t), Options{}).Full(ctx, RunOptions{}); err != nil || rep.Applied != 6 {
		t.Fatalf("initial run %+v %v", rep, err)
	}
	// no memberships would revoke every grant, if a failed read looked like that
	n := countAudit(t, s)
	for _, fs := range []*flakyStore{{Store: s, failGroups: true}, {Store: s, dropLast: true}} {
		rep, err := New(fs, launchEngine(t), Options{Guard: Guard{MinRevokes: 1 << 30}}).Full(ctx, RunOptions{})
		if err == nil {
			t.Fatalf("%+v: run succeeded: %+v", *fs, rep.Plan)
		}
		if countAudit(t, s) != n {
			t.Fatalf("%+v: a failed run wrote something", *fs)
		}
	}
	if all, _ := s.ListGrants(ctx, store.GrantQuery{}); len(all) != 6 {
		t.Fatalf("%d grants left", len(all))
	}
}

// failingHead fails LastAuditSeq a number of times.
type failingHead struct {
	store.Store
	mu    sync.Mutex
	fails int
}

func (f *failingHead) LastAuditSeq(ctx context.Context) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fails > 0 {
		f.fails--
		return 0, errors.New("database is locked")
	}
	return f.Store.LastAuditSeq(ctx)
}

// TestFeedRunRetriesItsStart: a store briefly unreachable when serve starts
// delays the feed (retried each interval) instead of ending it.
func TestFeedRunRetriesItsStart(t *testing.T) {
	s := openSQLite(t)
	sd := newSeed(t, s)
	u := sd.user(t, "ivan@smith.example", "3856", "")
	clock := newFakeClock()
	q := &recordingQueue{}
	feed := NewFeed(&failingHead{Store: s, fails: 2}, q, FeedOptions{Clock: clock, Interval: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- feed.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for range 2 { // two failed starts, each waiting one interval
		clock.waitAfter(t, time.Second)
		clock.Advance(time.Second)
	}
	clock.waitAfter(t, time.Second) // started, first poll done, waiting for the next tick
	if err := s.Update(context.Background(), audit.Meta{Actor: "ldap:corp"}, func(ctx context.Context, tx store.Tx) error {
		return tx.AddMembers(ctx, sd.groups["LAA Crime"], []string{u})
	}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	clock.waitAfter(t, time.Second)
	if got := q.take(); !slices.Equal(got, []string{u}) {
		t.Fatalf("enqueued %v, want [%s]", got, u)
	}
}
