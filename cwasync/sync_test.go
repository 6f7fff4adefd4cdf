package cwasync_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/cwasync"
	"github.com/dirsyncd/dirsyncd/cwasync/cwafake"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/internal/testenv"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/store/postgres"
	"github.com/dirsyncd/dirsyncd/store/sqlite"
)

// backends lists the real stores the sync tests run against.
var backends = []struct {
	name string
	open func(t testing.TB) store.Store
}{
	{"sqlite", openSQLite},
	{"postgres", openPostgres},
	// The SQL stores' transactions have the bulk puts (cwasync.BulkTx);
	// this one hides them, so the one-by-one path passes the same tests.
	{"sqlite-single-puts", func(t testing.TB) store.Store { return singlePuts{openSQLite(t)} }},
}

type singlePuts struct{ store.Store }

func (s singlePuts) Update(ctx context.Context, m audit.Meta, fn func(ctx context.Context, tx store.Tx) error) error {
	return s.Store.Update(ctx, m, func(ctx context.Context, tx store.Tx) error {
		return fn(ctx, struct{ store.Tx }{tx})
	})
}

func openSQLite(t testing.TB) store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "dirsyncd.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return st
}

func openPostgres(t testing.TB) store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := postgres.Open(ctx, testenv.Postgres(t), postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return st
}

// env is one sync test: a store, the fake CWA serving a fixture and a
// client that never sleeps for real.
type env struct {
	t     *testing.T
	st    store.Store
	fake  *cwafake.Handler
	api   *cwasync.Client
	sl    *sleeps
	now   time.Time
	minFr float64
}

func forEachBackend(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			st := b.open(t)
			fx, err := cwafake.LoadFixture("testdata/sync.json")
			if err != nil {
				t.Fatal(err)
			}
			h := cwafake.NewHandler(fx, apiKey)
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			api, sl := newClient(t, srv.URL, nil)
			fn(t, &env{t: t, st: st, fake: h, api: api, sl: sl, now: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)})
		})
	}
}

func (e *env) syncer() *cwasync.Syncer {
	return cwasync.New(e.api, e.st, cwasync.Options{Concurrency: 4, MinFraction: e.minFr, Now: func() time.Time { return e.now }})
}

// run records a run and syncs under it.
func (e *env) run(dry bool) (*cwasync.Report, string, error) {
	e.t.Helper()
	ctx := context.Background()
	id := fmt.Sprintf("00000000-0000-4000-8000-%012d", time.Now().UnixNano()%1e12)
	err := e.st.Update(ctx, audit.Meta{Actor: audit.ActorScheduler, RunID: id}, func(ctx context.Context, tx store.Tx) error {
		return tx.CreateRun(ctx, &directory.Run{ID: id, Job: "cwa", Trigger: "manual", Status: directory.RunRunning, StartedAt: e.now})
	})
	if err != nil {
		e.t.Fatal(err)
	}
	rep, err := e.syncer().Sync(ctx, id, dry)
	return rep, id, err
}

func (e *env) mustRun() (*cwasync.Report, string) {
	e.t.Helper()
	rep, id, err := e.run(false)
	if err != nil {
		e.t.Fatalf("sync: %v", err)
	}
	return rep, id
}

func (e *env) createUser(name, email string) string {
	e.t.Helper()
	u := &directory.User{UserName: name, Email: email, Active: true}
	err := e.st.Update(context.Background(), audit.Meta{Actor: "test"}, func(ctx context.Context, tx store.Tx) error {
		return tx.CreateUser(ctx, u)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return u.ID
}

// events counts audit events by actor "cwa" (and checks their run id).
func (e *env) events() int {
	e.t.Helper()
	n := 0
	err := e.st.Audit(context.Background(), store.AuditFilter{Actor: audit.ActorCWA}, func(ev audit.Event) error {
		if ev.RunID == "" {
			return fmt.Errorf("cwa event %s %s without run id", ev.Action, ev.ObjectID)
		}
		n++
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) firm(n string) directory.Firm {
	e.t.Helper()
	f, err := e.st.GetFirm(context.Background(), n)
	if err != nil {
		e.t.Fatalf("firm %s: %v", n, err)
	}
	return f
}

func (e *env) office(c string) directory.Office {
	e.t.Helper()
	o, err := e.st.GetOffice(context.Background(), c)
	if err != nil {
		e.t.Fatalf("office %s: %v", c, err)
	}
	return o
}

func (e *env) login(l string) directory.LegacyLogin {
	e.t.Helper()
	v, err := e.st.GetLegacyLogin(context.Background(), l)
	if err != nil {
		e.t.Fatalf("legacy login %s: %v", l, err)
	}
	return v
}

func (e *env) items(runID string) []directory.RunItem {
	e.t.Helper()
	its, err := e.st.ListRunItems(context.Background(), store.RunItemQuery{RunID: runID, Limit: 10000})
	if err != nil {
		e.t.Fatal(err)
	}
	return its
}

func findItem(its []directory.RunItem, action, typ, id, reason string) bool {
	return slices.ContainsFunc(its, func(it directory.RunItem) bool {
		return it.Action == action && it.ObjectType == typ && it.ObjectID == id && strings.Contains(it.Reason, reason)
	})
}

func TestSyncInitial(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		john := e.createUser("john", "J.SMITH@SMITH.EXAMPLE")
		alice := e.createUser("alice", "a.brown@smith.example")
		rep, runID := e.mustRun()

		// Firms, with the snapshot rules applied.
		wantFirms := map[string]directory.Firm{
			"3856": {Name: "Smith & Co Solicitors", Type: directory.FirmLegalServicesProvider},
			"4001": {Name: "Grays Chambers", Type: directory.FirmChambers},
			"4002": {Name: "Jane Doe", Type: directory.FirmAdvocate, ParentNumber: "4001"},
			"5001": {Name: "Shared Name (5001)", Type: directory.FirmLegalServicesProvider},
			"5002": {Name: "Shared Name (5002)", Type: directory.FirmLegalServicesProvider},
			"6001": {Name: "Lone Advocate", Type: directory.FirmAdvocate},
			"6002": {Name: "Under Advocate", Type: directory.FirmLegalServicesProvider}, // advocate parent cleared
			"7001": {Name: "Top", Type: directory.FirmLegalServicesProvider},
			"7002": {Name: "Mid", Type: directory.FirmLegalServicesProvider, ParentNumber: "7001"},
			"7003": {Name: "Low", Type: directory.FirmLegalServicesProvider}, // two levels: cleared
		}
		firms, err := e.st.ListFirms(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(firms) != len(wantFirms) {
			t.Errorf("%d firms, want %d: %+v", len(firms), len(wantFirms), firms)
		}
		for _, f := range firms {
			w := wantFirms[f.Number]
			if f.Name != w.Name || f.Type != w.Type || f.ParentNumber != w.ParentNumber || !f.Enabled {
				t.Errorf("firm %s = %+v, want %+v", f.Number, f, w)
			}
		}
		for _, gone := range []string{"8001", "8002"} {
			if _, err := e.st.GetFirm(context.Background(), gone); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("dropped firm %s imported (err %v)", gone, err)
			}
		}
		if _, err := e.st.GetOffice(context.Background(), "9Z999Z"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("office without a firm imported (err %v)", err)
		}
		o := e.office("0Q731M")
		if o.FirmNumber != "3856" || !o.Active || !slices.Equal(o.Address, []string{"1 High Street"}) || o.City != "Leeds" || o.Postcode != "LS1 1AA" {
			t.Errorf("office 0Q731M = %+v", o)
		}

		// Legacy logins: facts, linked by e-mail case-insensitively.
		js := e.login("JSMITH")
		if js.UserID != john || js.FirmNumber != "3856" || !slices.Equal(js.OfficeCodes, []string{"0Q731M"}) || js.GivenName != "John" {
			t.Errorf("JSMITH = %+v", js)
		}
		if ab := e.login("ABROWN"); ab.UserID != alice || !slices.Equal(ab.OfficeCodes, []string{"0Q731M", "1A001L"}) {
			t.Errorf("ABROWN = %+v", ab)
		}
		gh := e.login("GHOST")
		if gh.UserID != "" || !slices.Equal(gh.OfficeCodes, []string{"1A001L"}) {
			t.Errorf("GHOST = %+v, want unmatched with only its own firm's valid office", gh)
		}
		u, err := e.st.FindUserByLink(context.Background(), cwasync.Source, "JSMITH")
		if err != nil || u.ID != john {
			t.Errorf("link cwa/JSMITH → %v %v, want john", u.ID, err)
		}
		if _, err := e.st.FindUserByLink(context.Background(), cwasync.Source, "GHOST"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("unmatched login has a link (err %v)", err)
		}

		// Report: counts and items with reasons.
		c := rep.Counts
		for k, want := range map[string]int64{"firms_created": 10, "offices_created": 11, "legacy_logins_created": 5,
			"linked": 2, "unmatched": 3, "dropped": 3, "repaired": 4, "rows": 14, "firms": 10, "offices": 11, "logins": 5} {
			if c[k] != want {
				t.Errorf("count %s = %d, want %d (all: %v)", k, c[k], want, c)
			}
		}
		if c["rejected"] < 2 {
			t.Errorf("rejected = %d, want the bad office code row and GHOST's codes", c["rejected"])
		}
		its := e.items(runID)
		for _, w := range []struct{ action, typ, id, reason string }{
			{cwasync.ActionCreated, cwasync.ObjFirm, "3856", "new"},
			{cwasync.ActionDropped, cwasync.ObjOffice, "9Z999Z", "office without a firm"},
			{cwasync.ActionDropped, cwasync.ObjFirm, "8001", "firm without offices"},
			{cwasync.ActionRejected, cwasync.ObjOffice, "12-34", "invalid office code"},
			{cwasync.ActionDropped, cwasync.ObjFirm, "8002", "firm without offices"},
			{cwasync.ActionRepaired, cwasync.ObjFirm, "6002", "advocate is never a parent"},
			{cwasync.ActionRepaired, cwasync.ObjFirm, "7003", "one level deep"},
			{cwasync.ActionRepaired, cwasync.ObjFirm, "5001", "firm number appended"},
			{cwasync.ActionRejected, cwasync.ObjLegacyLogin, "GHOST", "office 2B002C belongs to firm 4001"},
			{cwasync.ActionUnmatched, cwasync.ObjLegacyLogin, "GHOST", "no user has e-mail"},
			{cwasync.ActionUnmatched, cwasync.ObjLegacyLogin, "NOEMAIL", "no e-mail"},
			{cwasync.ActionLinked, cwasync.ObjLegacyLogin, "JSMITH", "linked by e-mail"},
		} {
			if !findItem(its, w.action, w.typ, w.id, w.reason) {
				t.Errorf("run items lack %+v", w)
			}
		}
		// Every change is an audit event by actor cwa with the run id.
		if n := e.events(); n < 10+11+5+2 {
			t.Errorf("%d cwa audit events, want one per change (≥ 28)", n)
		}
		e.verifyChain()
	})
}

// verifyChain checks the audit hash chain (the bulk writes seal and insert
// their events like every other write).
func (e *env) verifyChain() {
	e.t.Helper()
	v, err := e.st.VerifyAudit(context.Background())
	if err != nil || !v.OK() || v.Checked == 0 {
		e.t.Fatalf("audit chain: %+v %v", v, err)
	}
}

func TestSyncRepeatWritesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.createUser("john", "j.smith@smith.example")
		e.mustRun()
		before := e.events()
		e.now = e.now.Add(time.Hour)
		rep, _ := e.mustRun()
		if rep.Writes != 0 {
			t.Errorf("repeat made %d writes, want 0", rep.Writes)
		}
		if n := e.events(); n != before {
			t.Errorf("repeat wrote %d audit events", n-before)
		}
		for _, k := range []string{"created", "updated", "disabled", "linked", "unlinked", "gone"} {
			if rep.Counts[k] != 0 {
				t.Errorf("repeat count %s = %d", k, rep.Counts[k])
			}
		}
		if rep.Counts["unmatched"] != 4 {
			t.Errorf("unmatched count %d, want 4 (still reported)", rep.Counts["unmatched"])
		}
	})
}

func TestSyncFirmMissingIsDisabled(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.createUser("jane", "jane@doe.example")
		e.mustRun()
		fx := e.fake.Fixture()
		fx.Offices = slices.DeleteFunc(fx.Offices, func(o cwafake.OfficeRow) bool { return o.FirmNumber == "4002" })
		fx.Users = slices.DeleteFunc(fx.Users, func(u cwafake.User) bool { return u.FirmNumber == "4002" })
		e.fake.SetFixture(fx)
		rep, runID := e.mustRun()

		f := e.firm("4002") // still there: disabled, never deleted
		if f.Enabled || f.Name != "Jane Doe" {
			t.Errorf("firm 4002 = %+v, want kept and disabled", f)
		}
		if o := e.office("3C003D"); o.Active {
			t.Errorf("office of the missing firm still active: %+v", o)
		}
		jd := e.login("JDOE")
		if jd.UserID != "" || len(jd.OfficeCodes) != 0 {
			t.Errorf("JDOE = %+v, want office codes and user link removed", jd)
		}
		u, err := e.st.FindUserByLink(context.Background(), cwasync.Source, "JDOE")
		if err == nil {
			links, _ := e.st.ListUserLinks(context.Background(), u.ID)
			for _, l := range links {
				if l.Source == cwasync.Source && l.Key == "JDOE" && l.GoneAt == nil {
					t.Errorf("link cwa/JDOE not marked gone: %+v", l)
				}
			}
		}
		if rep.Counts["firms_disabled"] != 1 || rep.Counts["offices_disabled"] != 1 || rep.Counts["gone"] != 1 || rep.Counts["unlinked"] != 1 {
			t.Errorf("counts %v", rep.Counts)
		}
		its := e.items(runID)
		if !findItem(its, cwasync.ActionDisabled, cwasync.ObjFirm, "4002", "disabled, not deleted") {
			t.Errorf("no disabled item for firm 4002: %+v", its)
		}
		// Back in the snapshot: enabled again.
		e.fake.SetFixture(mustFixture(t))
		rep, _ = e.mustRun()
		if f := e.firm("4002"); !f.Enabled {
			t.Errorf("firm 4002 not re-enabled: %+v", f)
		}
		if jd := e.login("JDOE"); !slices.Equal(jd.OfficeCodes, []string{"3C003D"}) || jd.UserID == "" {
			t.Errorf("JDOE not restored: %+v", jd)
		}
		if rep.Counts["linked"] != 1 {
			t.Errorf("relink count %d", rep.Counts["linked"])
		}
	})
}

func mustFixture(t *testing.T) *cwafake.Fixture {
	t.Helper()
	fx, err := cwafake.LoadFixture("testdata/sync.json")
	if err != nil {
		t.Fatal(err)
	}
	return fx
}

func TestSyncOfficeVanishesLosesUserLinks(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.mustRun()
		fx := e.fake.Fixture()
		fx.Offices = slices.DeleteFunc(fx.Offices, func(o cwafake.OfficeRow) bool { return o.OfficeAccountNumber == "1A001L" })
		// CWA may still list the code for the users for a while; it must go anyway.
		e.fake.SetFixture(fx)
		rep, runID := e.mustRun()
		if o := e.office("1A001L"); o.Active || o.FirmNumber != "3856" {
			t.Errorf("office 1A001L = %+v, want kept and inactive", o)
		}
		if ab := e.login("ABROWN"); !slices.Equal(ab.OfficeCodes, []string{"0Q731M"}) {
			t.Errorf("ABROWN codes %v, want 1A001L removed", ab.OfficeCodes)
		}
		if gh := e.login("GHOST"); len(gh.OfficeCodes) != 0 {
			t.Errorf("GHOST codes %v, want none", gh.OfficeCodes)
		}
		its := e.items(runID)
		if !findItem(its, cwasync.ActionDisabled, cwasync.ObjOffice, "1A001L", "user links removed") ||
			!findItem(its, cwasync.ActionUpdated, cwasync.ObjLegacyLogin, "ABROWN", "office codes removed: 1A001L") {
			t.Errorf("items %+v", its)
		}
		if rep.Counts["offices_disabled"] != 1 {
			t.Errorf("counts %v", rep.Counts)
		}
	})
}

func TestSyncOfficeMovesLosesUserLinks(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.mustRun()
		fx := e.fake.Fixture()
		for i, o := range fx.Offices {
			if o.OfficeAccountNumber == "1A001L" {
				fx.Offices[i].FirmNumber, fx.Offices[i].FirmName, fx.Offices[i].FirmType = "4001", "Grays Chambers", "Chambers"
			}
		}
		e.fake.SetFixture(fx) // ABROWN (firm 3856) is still listed with 1A001L
		_, runID := e.mustRun()
		if o := e.office("1A001L"); o.FirmNumber != "4001" || !o.Active {
			t.Errorf("office 1A001L = %+v, want moved to 4001", o)
		}
		if ab := e.login("ABROWN"); !slices.Equal(ab.OfficeCodes, []string{"0Q731M"}) {
			t.Errorf("ABROWN codes %v, want the moved office removed", ab.OfficeCodes)
		}
		its := e.items(runID)
		if !findItem(its, cwasync.ActionUpdated, cwasync.ObjOffice, "1A001L", "moved from firm 3856 to firm 4001") ||
			!findItem(its, cwasync.ActionRejected, cwasync.ObjLegacyLogin, "ABROWN", "office 1A001L belongs to firm 4001, not 3856") {
			t.Errorf("items %+v", its)
		}
	})
}

func TestSyncLinksWhenUserAppearsAndUnlinksWhenEmailChanges(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.mustRun()
		if gh := e.login("GHOST"); gh.UserID != "" {
			t.Fatalf("GHOST linked before its user exists")
		}
		id := e.createUser("gus", "Ghost@Smith.Example")
		rep, _ := e.mustRun()
		if gh := e.login("GHOST"); gh.UserID != id {
			t.Errorf("GHOST not linked to the new user: %+v", gh)
		}
		if rep.Counts["linked"] != 1 {
			t.Errorf("counts %v", rep.Counts)
		}
		// The login's e-mail changes in CWA: the link goes.
		fx := e.fake.Fixture()
		for i := range fx.Users {
			if fx.Users[i].UserLogin == "GHOST" {
				fx.Users[i].Email = "someone.else@smith.example"
			}
		}
		e.fake.SetFixture(fx)
		rep, runID := e.mustRun()
		if gh := e.login("GHOST"); gh.UserID != "" || gh.Email != "someone.else@smith.example" {
			t.Errorf("GHOST = %+v, want unlinked", gh)
		}
		if rep.Counts["unlinked"] != 1 || !findItem(e.items(runID), cwasync.ActionUnmatched, cwasync.ObjLegacyLogin, "GHOST", "someone.else") {
			t.Errorf("counts %v items %+v", rep.Counts, e.items(runID))
		}
	})
}

func TestSyncDryRunWritesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		rep, runID, err := e.run(true)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.DryRun || rep.Counts["firms_created"] != 10 || rep.Writes == 0 {
			t.Errorf("dry run report %+v", rep.Counts)
		}
		if !slices.ContainsFunc(rep.Items, func(it directory.RunItem) bool { return it.Action == cwasync.ActionCreated }) {
			t.Error("dry run plan lists no creations")
		}
		if n := e.events(); n != 0 {
			t.Errorf("dry run wrote %d audit events", n)
		}
		if fs, _ := e.st.ListFirms(context.Background()); len(fs) != 0 {
			t.Errorf("dry run wrote firms")
		}
		if its := e.items(runID); len(its) != 0 {
			t.Errorf("dry run wrote run items")
		}
		if c, err := e.st.GetCursor(context.Background(), cwasync.Source); c != "" || (err != nil && !errors.Is(err, store.ErrNotFound)) {
			t.Errorf("dry run set the cursor: %q %v", c, err)
		}
	})
}

// TestSyncAbortsBeforeChanging: after a good sync the snapshot loses a
// firm, but the run hits a fault; nothing may be disabled or written.
func TestSyncAbortsBeforeChanging(t *testing.T) {
	tests := []struct {
		name    string
		fault   cwafake.Fault
		wantErr error
	}{
		{"snapshot 500 persists", cwafake.Fault{Kind: cwafake.FaultServerError, Path: "/provider-offices/"}, nil},
		{"firm users 500 persists", cwafake.Fault{Kind: cwafake.FaultServerError, Path: "/provider-firms/3856/"}, nil},
		{"user offices 500 persists", cwafake.Fault{Kind: cwafake.FaultServerError, Path: "/provider-users/ABROWN/"}, nil},
		{"snapshot truncated", cwafake.Fault{Kind: cwafake.FaultTruncated, Path: "/provider-offices/"}, nil},
		{"firm users truncated", cwafake.Fault{Kind: cwafake.FaultTruncated, Path: "/provider-firms/"}, nil},
		{"snapshot malformed", cwafake.Fault{Kind: cwafake.FaultMalformed, Path: "/provider-offices/"}, cwasync.ErrMalformed},
		{"user offices malformed", cwafake.Fault{Kind: cwafake.FaultMalformed, Path: "/provider-users/"}, cwasync.ErrMalformed},
		{"out of hours", cwafake.Fault{Kind: cwafake.FaultOutOfHours}, cwasync.ErrUnavailable},
		{"out of hours mid-run", cwafake.Fault{Kind: cwafake.FaultOutOfHours, Path: "/provider-users/"}, cwasync.ErrUnavailable},
		{"429 for longer than we wait", cwafake.Fault{Kind: cwafake.FaultTooManyRequests, RetryAfter: time.Hour, Path: "/provider-firms/"}, cwasync.ErrUnavailable},
		{"401", cwafake.Fault{Kind: cwafake.FaultUnauthorized, Path: "/provider-firms/"}, cwasync.ErrUnauthorized},
	}
	forEachBackend(t, func(t *testing.T, e *env) {
		e.createUser("alice", "a.brown@smith.example")
		e.mustRun()
		before := e.events()
		fx := e.fake.Fixture()
		fx.Offices = slices.DeleteFunc(fx.Offices, func(o cwafake.OfficeRow) bool { return o.FirmNumber == "5002" })
		fx.Users = slices.DeleteFunc(fx.Users, func(u cwafake.User) bool { return u.UserLogin == "JDOE" })
		e.fake.SetFixture(fx)
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				e.t = t
				e.fake.ClearFaults()
				e.fake.Inject(tc.fault)
				rep, id, err := e.run(false)
				if err == nil {
					t.Fatal("sync succeeded through the fault")
				}
				if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Errorf("err %v, want %v", err, tc.wantErr)
				}
				checkAbortItem(t, e.items(id), rep, id, "run aborted, nothing was changed: "+err.Error())
				if f := e.firm("5002"); !f.Enabled {
					t.Error("firm disabled by a failed run")
				}
				if jd := e.login("JDOE"); len(jd.OfficeCodes) == 0 {
					t.Error("login emptied by a failed run")
				}
				if n := e.events(); n != before {
					t.Errorf("failed run wrote %d audit events", n-before)
				}
			})
		}
		// Without the fault the same change goes through.
		e.t = t
		e.fake.ClearFaults()
		e.mustRun()
		if f := e.firm("5002"); f.Enabled {
			t.Error("firm 5002 not disabled once CWA answers")
		}
		e.verifyChain()
	})
}

// checkAbortItem: an aborted run's report is exactly one item, action
// "failed" on the run, whose reason says why (and the report returned with
// the error holds the same item).
func checkAbortItem(t *testing.T, its []directory.RunItem, rep *cwasync.Report, runID, reason string) {
	t.Helper()
	if len(its) != 1 {
		t.Fatalf("aborted run has %d items, want 1: %+v", len(its), its)
	}
	it := its[0]
	if it.Action != cwasync.ActionFailed || it.ObjectType != cwasync.ObjRun || it.ObjectID != runID || it.Reason != reason {
		t.Errorf("abort item %+v, want failed/run/%s %q", it, runID, reason)
	}
	if rep == nil || len(rep.Items) != 1 || rep.Items[0].Reason != reason {
		t.Errorf("report returned with the error: %+v", rep)
	}
}

func TestSyncRetriesTransientFaults(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.fake.Inject(cwafake.Fault{Kind: cwafake.FaultServerError, Path: "/provider-firms/3856/", Times: 2})
		e.fake.Inject(cwafake.Fault{Kind: cwafake.FaultTooManyRequests, RetryAfter: 3 * time.Second, Path: "/provider-offices/", Times: 1})
		e.fake.Inject(cwafake.Fault{Kind: cwafake.FaultTruncated, Path: "/provider-users/JSMITH/", Times: 1})
		rep, _ := e.mustRun()
		if rep.Counts["firms_created"] != 10 || rep.Counts["legacy_logins_created"] != 5 {
			t.Errorf("counts %v", rep.Counts)
		}
		if !slices.Contains(e.sl.get(), 3*time.Second) || len(e.sl.get()) != 4 {
			t.Errorf("sleeps %v, want 4 retries incl. the 3s Retry-After", e.sl.get())
		}
	})
}

func TestSyncSnapshotTooSmall(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.mustRun()
		before := e.events()
		fx := e.fake.Fixture()
		// Keep 4 of 10 firms (and 5 of 11 offices): below half.
		keep := map[string]bool{"3856": true, "4001": true, "4002": true, "5001": true}
		fx.Offices = slices.DeleteFunc(fx.Offices, func(o cwafake.OfficeRow) bool { return !keep[o.FirmNumber] })
		e.fake.SetFixture(fx)
		rep, id, err := e.run(false)
		if !errors.Is(err, cwasync.ErrSnapshotTooSmall) {
			t.Fatalf("err %v, want ErrSnapshotTooSmall", err)
		}
		checkAbortItem(t, e.items(id), rep, id, "run aborted by the shrink guard (cwa.minFraction), nothing was changed: "+err.Error())
		if !strings.Contains(err.Error(), "4 firms and 5 offices") {
			t.Errorf("err %v does not give the sizes", err)
		}
		if f := e.firm("7001"); !f.Enabled {
			t.Error("firm disabled by an aborted run")
		}
		if n := e.events(); n != before {
			t.Errorf("aborted run wrote %d audit events", n-before)
		}
		// An empty snapshot too.
		e.fake.SetFixture(&cwafake.Fixture{})
		if _, _, err := e.run(false); !errors.Is(err, cwasync.ErrSnapshotTooSmall) {
			t.Fatalf("empty snapshot: err %v, want ErrSnapshotTooSmall", err)
		}
		// A lower configured fraction lets the smaller snapshot through.
		e.fake.SetFixture(fx)
		e.minFr = 0.3
		rep, _ = e.mustRun()
		if rep.Counts["firms_disabled"] != 6 {
			t.Errorf("counts %v", rep.Counts)
		}
		// The cursor now holds the smaller snapshot as the last good one.
		c, err := e.st.GetCursor(context.Background(), cwasync.Source)
		if err != nil || !strings.Contains(c, `"firms":4`) {
			t.Errorf("cursor %q %v", c, err)
		}
	})
}

// TestSyncShrinkGuardOff: with the guard off (config cwa.minFraction: 0)
// even an empty snapshot is applied: every firm disabled, every office
// inactive, every login gone; the default guard refuses the same snapshot.
func TestSyncShrinkGuardOff(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.mustRun()
		e.fake.SetFixture(&cwafake.Fixture{})
		if _, _, err := e.run(false); !errors.Is(err, cwasync.ErrSnapshotTooSmall) {
			t.Fatalf("default guard: err %v, want ErrSnapshotTooSmall", err)
		}
		if f := e.firm("3856"); !f.Enabled {
			t.Fatal("firm disabled by the refused run")
		}
		e.minFr = cwasync.ShrinkGuardOff
		rep, id := e.mustRun()
		if rep.Counts["firms_disabled"] != 10 || rep.Counts["offices_disabled"] != 11 || rep.Counts["gone"] != 5 {
			t.Errorf("counts %v", rep.Counts)
		}
		if f := e.firm("3856"); f.Enabled {
			t.Error("firm 3856 still enabled with the guard off")
		}
		if !findItem(e.items(id), cwasync.ActionDisabled, cwasync.ObjFirm, "3856", "missing from the CWA snapshot") {
			t.Error("no disabled item for firm 3856")
		}
	})
}

// TestSyncDryRunAbortReport: a dry run that fails returns the abort item
// in its report and writes nothing, not even the item.
func TestSyncDryRunAbortReport(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.fake.Inject(cwafake.Fault{Kind: cwafake.FaultOutOfHours})
		rep, id, err := e.run(true)
		if !errors.Is(err, cwasync.ErrUnavailable) {
			t.Fatalf("err %v", err)
		}
		if rep == nil || !rep.DryRun || len(rep.Items) != 1 || rep.Items[0].Action != cwasync.ActionFailed ||
			!strings.Contains(rep.Items[0].Reason, "outside service hours") {
			t.Errorf("dry-run abort report %+v", rep)
		}
		if its := e.items(id); len(its) != 0 {
			t.Errorf("dry run wrote items %+v", its)
		}
	})
}

// TestSyncTooSmallWithoutCursor: with no cursor, the baseline is what the
// store holds.
func TestSyncTooSmallWithoutCursor(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		err := e.st.Update(context.Background(), audit.Meta{Actor: "test"}, func(ctx context.Context, tx store.Tx) error {
			for i := 0; i < 30; i++ {
				if err := tx.PutFirm(ctx, &directory.Firm{Number: fmt.Sprintf("X%d", i), Name: fmt.Sprintf("X%d", i), Type: directory.FirmChambers, Enabled: true}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.run(false); !errors.Is(err, cwasync.ErrSnapshotTooSmall) {
			t.Fatalf("err %v, want ErrSnapshotTooSmall against the 30 stored firms", err)
		}
	})
}

func TestSyncRejectsBadLogins(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		fx := e.fake.Fixture()
		// ABROWN is listed by a second firm too (the fake serves one set of
		// codes per login), and firm 5002 lists a login without a name.
		fx.Users = append(fx.Users,
			cwafake.User{UserLogin: "ABROWN", FirmNumber: "4001", Email: "a.brown@smith.example", OfficeCodes: []string{"0Q731M", "1A001L"}},
			cwafake.User{UserLogin: " ", FirmNumber: "5002"})
		e.fake.SetFixture(fx)
		rep, runID := e.mustRun()
		if ab := e.login("ABROWN"); ab.FirmNumber != "3856" {
			t.Errorf("ABROWN = %+v, want kept in firm 3856 (the first by number)", ab)
		}
		its := e.items(runID)
		if !findItem(its, cwasync.ActionRejected, cwasync.ObjLegacyLogin, "ABROWN", "also listed by firm 4001; kept in firm 3856") ||
			!findItem(its, cwasync.ActionRejected, cwasync.ObjLegacyLogin, "firm 5002", "without a userLogin") {
			t.Errorf("items %+v", its)
		}
		if rep.Counts["legacy_logins_created"] != 5 {
			t.Errorf("counts %v", rep.Counts)
		}
	})
}

// TestSyncTooFewFirms: the firm count alone can abort (every office moved
// into one firm: as many offices, far fewer firms).
func TestSyncTooFewFirms(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.mustRun()
		fx := e.fake.Fixture()
		for i := range fx.Offices {
			if fx.Offices[i].FirmNumber != "" {
				fx.Offices[i].FirmNumber, fx.Offices[i].FirmName, fx.Offices[i].FirmType, fx.Offices[i].ParentFirmNumber = "3856", "Smith & Co Solicitors", "Legal Services Provider", ""
			}
		}
		e.fake.SetFixture(fx)
		if _, _, err := e.run(false); !errors.Is(err, cwasync.ErrSnapshotTooSmall) || !strings.Contains(err.Error(), "1 firms and 11 offices") {
			t.Fatalf("err %v, want ErrSnapshotTooSmall for 1 firm of 10", err)
		}
		if f := e.firm("4001"); !f.Enabled {
			t.Error("firm disabled by an aborted run")
		}
	})
}

// failingTx fails the first office write (single puts: no bulk forms).
type failingTx struct{ store.Tx }

func (failingTx) PutOffice(context.Context, *directory.Office) error {
	return errors.New("injected office write failure")
}

type failingStore struct{ store.Store }

func (s failingStore) Update(ctx context.Context, m audit.Meta, fn func(ctx context.Context, tx store.Tx) error) error {
	return s.Store.Update(ctx, m, func(ctx context.Context, tx store.Tx) error { return fn(ctx, failingTx{tx}) })
}

// TestSyncApplyFailureRollsBack: a write failing after every read
// succeeded rolls the whole run back (the firms written before it too),
// and the run's one item says the changes were not committed.
func TestSyncApplyFailureRollsBack(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.st = failingStore{e.st}
		rep, id, err := e.run(false)
		if err == nil || !strings.Contains(err.Error(), "injected office write failure") {
			t.Fatalf("err %v", err)
		}
		checkAbortItem(t, e.items(id), rep, id, "run failed writing its changes (one transaction, not committed): "+err.Error())
		if fs, err := e.st.ListFirms(context.Background()); err != nil || len(fs) != 0 {
			t.Errorf("firms after the failed run: %d %v", len(fs), err)
		}
		if n := e.events(); n != 0 {
			t.Errorf("failed run left %d cwa audit events", n)
		}
		e.verifyChain()
	})
}

// TestSyncTooFewLogins: firms and offices all there but (nearly) every
// firm listing no logins, e.g. CWA answering the per-firm calls with empty
// lists during an outage, is as suspicious as a small snapshot: the run
// aborts before any login loses its office codes and user link.
func TestSyncTooFewLogins(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.createUser("abrown", "a.brown@smith.example")
		e.mustRun()
		before := e.events()
		fx := e.fake.Fixture()
		fx.Users = nil
		e.fake.SetFixture(fx)
		rep, id, err := e.run(false)
		if !errors.Is(err, cwasync.ErrSnapshotTooSmall) {
			t.Fatalf("err %v, want ErrSnapshotTooSmall for 0 of 5 logins", err)
		}
		checkAbortItem(t, e.items(id), rep, id, "run aborted by the shrink guard (cwa.minFraction), nothing was changed: "+err.Error())
		if ab := e.login("ABROWN"); ab.UserID == "" || len(ab.OfficeCodes) == 0 {
			t.Errorf("ABROWN = %+v: emptied by an aborted run", ab)
		}
		if n := e.events(); n != before {
			t.Errorf("aborted run wrote %d audit events", n-before)
		}
		// With the guard off the same answer is applied.
		e.minFr = cwasync.ShrinkGuardOff
		if rep, _ := e.mustRun(); rep.Counts["gone"] != 5 {
			t.Errorf("guard off: counts %v", rep.Counts)
		}
	})
}

// deletingStore soft-deletes a user right after the first page of users
// is read, as a SCIM DELETE running beside the sync would.
type deletingStore struct {
	store.Store
	victim string
	done   bool
}

func (s *deletingStore) ListUsersAfter(ctx context.Context, after string, limit int) ([]directory.User, error) {
	us, err := s.Store.ListUsersAfter(ctx, after, limit)
	if err == nil && !s.done {
		s.done = true
		err = s.Store.Update(ctx, audit.Meta{Actor: "scim:test"}, func(ctx context.Context, tx store.Tx) error {
			return tx.DeleteUser(ctx, s.victim)
		})
	}
	return us, err
}

// TestSyncMatchesLoginsWhileUsersChange: the users are read in pages to
// match logins by e-mail; a user leaving the set read (deleted) between two
// pages must not make another user unread, whose login would then be
// unmatched and lose its link.
func TestSyncMatchesLoginsWhileUsersChange(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		const fillers = 5000 // a page of the sync's user read
		err := e.st.Update(context.Background(), audit.Meta{Actor: "test"}, func(ctx context.Context, tx store.Tx) error {
			for i := 0; i < fillers; i++ {
				u := &directory.User{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), UserName: fmt.Sprintf("filler%d", i),
					Email: fmt.Sprintf("filler%d@example.org", i), Active: true}
				if err := tx.CreateUser(ctx, u); err != nil {
					return err
				}
			}
			return tx.CreateUser(ctx, &directory.User{ID: "ffffffff-0000-4000-8000-000000000000", UserName: "abrown",
				Email: "a.brown@smith.example", Active: true})
		})
		if err != nil {
			t.Fatal(err)
		}
		ds := &deletingStore{Store: e.st, victim: "00000000-0000-4000-8000-000000000000"}
		if _, err := cwasync.New(e.api, ds, cwasync.Options{Concurrency: 4, Now: func() time.Time { return e.now }}).Sync(context.Background(), "", false); err != nil {
			t.Fatal(err)
		}
		if !ds.done {
			t.Fatal("the sync read no users")
		}
		if l := e.login("ABROWN"); l.UserID != "ffffffff-0000-4000-8000-000000000000" {
			t.Errorf("ABROWN = %+v: not matched to abrown, read after a user left the first page", l)
		}
	})
}

// TestSyncRejectedFirmIsNotGone: a firm whose rows are rejected (here an
// unknown spelling of its type) is in the snapshot, not missing from it: a
// bad row is reported and not imported, and nothing of the firm is
// disabled, deactivated, emptied or unlinked on its account.
func TestSyncRejectedFirmIsNotGone(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		uid := e.createUser("abrown", "a.brown@smith.example")
		e.mustRun()
		fx := e.fake.Fixture()
		for i := range fx.Offices {
			if fx.Offices[i].FirmNumber == "3856" {
				fx.Offices[i].FirmType = "Legal services provider"
			}
		}
		e.fake.SetFixture(fx)
		rep, id := e.mustRun()
		if !findItem(e.items(id), cwasync.ActionRejected, cwasync.ObjFirm, "3856", "unknown firm type") {
			t.Errorf("no rejected item for firm 3856: %+v", rep.Items)
		}
		if f := e.firm("3856"); !f.Enabled {
			t.Error("firm 3856 disabled because its rows were rejected")
		}
		for _, c := range []string{"0Q731M", "1A001L"} {
			if o := e.office(c); !o.Active {
				t.Errorf("office %s made inactive because its firm's rows were rejected", c)
			}
		}
		if l := e.login("ABROWN"); l.UserID != uid || len(l.OfficeCodes) != 2 {
			t.Errorf("ABROWN = %+v: emptied because its firm's rows were rejected", l)
		}
		for _, it := range e.items(id) {
			if (it.Action == cwasync.ActionDisabled || it.Action == cwasync.ActionGone || it.Action == cwasync.ActionUnlinked) &&
				(it.ObjectID == "3856" || it.ObjectID == "0Q731M" || it.ObjectID == "1A001L" || it.ObjectID == "ABROWN" || it.ObjectID == "JSMITH") {
				t.Errorf("item %+v", it)
			}
		}
	})
}

// TestSyncDisputedOfficeIsNotGone: an office listed for two firms is
// rejected for both, but it is not missing: it stays active, and its firm,
// left without an undisputed office, is not disabled.
func TestSyncDisputedOfficeIsNotGone(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.mustRun()
		fx := e.fake.Fixture()
		var row cwafake.OfficeRow
		for _, o := range fx.Offices {
			if o.FirmNumber == "7002" {
				row = o
			}
		}
		row.OfficeAccountNumber = "7A001A" // firm 7001's only office
		fx.Offices = append(fx.Offices, row)
		e.fake.SetFixture(fx)
		_, id := e.mustRun()
		if !findItem(e.items(id), cwasync.ActionRejected, cwasync.ObjOffice, "7A001A", "listed for firms") {
			t.Error("no rejected item for office 7A001A")
		}
		if o := e.office("7A001A"); !o.Active || o.FirmNumber != "7001" {
			t.Errorf("office 7A001A = %+v: changed because it was disputed", o)
		}
		if f := e.firm("7001"); !f.Enabled {
			t.Error("firm 7001 disabled because its office was disputed")
		}
	})
}
