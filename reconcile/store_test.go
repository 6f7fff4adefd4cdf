package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/internal/testenv"
	"github.com/dirsyncd/dirsyncd/mapping"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/store/postgres"
	"github.com/dirsyncd/dirsyncd/store/sqlite"
)

// backends are the real stores every store-backed test runs against.
var backends = []struct {
	name string
	open func(t testing.TB) store.Store
}{
	{"sqlite", openSQLite},
	{"postgres", openPostgres},
}

// forEachStore runs fn as a subtest against each backend.
func forEachStore(t *testing.T, fn func(t *testing.T, s store.Store)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { fn(t, b.open(t)) })
	}
}

// openPostgres opens a fresh, migrated database in the test cluster
// (testenv: fails under CI when PostgreSQL is missing, skips otherwise).
func openPostgres(t testing.TB) store.Store {
	t.Helper()
	ctx := context.Background()
	s, err := postgres.Open(ctx, testenv.Postgres(t), postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// openSQLite opens a fresh, migrated SQLite store in a temp dir.
func openSQLite(t testing.TB) store.Store {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "dirsyncd.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func launchEngine(t testing.TB) *mapping.Engine {
	t.Helper()
	cat, err := mapping.LoadCatalogue(filepath.Join("..", "configs", "catalogue.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := mapping.LoadRules(filepath.Join("..", "configs", "rules.yaml"), cat)
	if err != nil {
		t.Fatal(err)
	}
	return mapping.NewEngine(cat, rs)
}

// seed is a small world: firm 3856 (provider; offices 0Q731M 1A001L 2B002X),
// firm 4000 (provider; 4C000A), firm 5000 (chambers; 5D000A), groups by name.
type seed struct {
	s      store.Store
	groups map[string]string // name -> id
}

func newSeed(t testing.TB, s store.Store) *seed {
	t.Helper()
	sd := &seed{s: s, groups: map[string]string{}}
	sd.update(t, func(ctx context.Context, tx store.Tx) error {
		for _, f := range []directory.Firm{
			{Number: "3856", Name: "Smith & Co", Type: directory.FirmLegalServicesProvider, Enabled: true},
			{Number: "4000", Name: "Jones LLP", Type: directory.FirmLegalServicesProvider, Enabled: true},
			{Number: "5000", Name: "Temple Chambers", Type: directory.FirmChambers, Enabled: true},
		} {
			if err := tx.PutFirm(ctx, &f); err != nil {
				return err
			}
		}
		for _, o := range []directory.Office{
			{Code: "0Q731M", FirmNumber: "3856", Active: true}, {Code: "1A001L", FirmNumber: "3856", Active: true},
			{Code: "2B002X", FirmNumber: "3856", Active: true}, {Code: "4C000A", FirmNumber: "4000", Active: true},
			{Code: "5D000A", FirmNumber: "5000", Active: true},
		} {
			if err := tx.PutOffice(ctx, &o); err != nil {
				return err
			}
		}
		for _, name := range []string{"LAA Crime", "LAA CCMS Case Workers", "LAA CCMS Supervisors", "LAA Counsel Billing", "Team A"} {
			g := &directory.Group{Source: "scim:entra", DisplayName: name}
			if err := tx.CreateGroup(ctx, g); err != nil {
				return err
			}
			sd.groups[name] = g.ID
		}
		// Team A is nested in the supervisors group
		return tx.AddGroupChild(ctx, sd.groups["LAA CCMS Supervisors"], sd.groups["Team A"])
	})
	return sd
}

func (sd *seed) update(t testing.TB, fn func(ctx context.Context, tx store.Tx) error) {
	t.Helper()
	if err := sd.s.Update(context.Background(), audit.Meta{Actor: "test"}, fn); err != nil {
		t.Fatal(err)
	}
}

// user creates an active user in firm with a SCIM link, in groups.
func (sd *seed) user(t testing.TB, name, firm string, offices string, groups ...string) string {
	t.Helper()
	var id string
	sd.update(t, func(ctx context.Context, tx store.Tx) error {
		u := &directory.User{UserName: name, Email: name, Active: true, FirmNumber: firm,
			Attrs: json.RawMessage(fmt.Sprintf(`{"officeCodes":%q}`, offices))}
		if err := tx.CreateUser(ctx, u); err != nil {
			return err
		}
		id = u.ID
		if err := tx.PutLink(ctx, directory.SourceLink{UserID: u.ID, Source: "scim:entra", Key: "ext-" + name}); err != nil {
			return err
		}
		if err := tx.PutFirmMembership(ctx, directory.FirmMembership{UserID: u.ID, FirmNumber: firm, Source: "scim:entra"}); err != nil {
			return err
		}
		for _, g := range groups {
			if err := tx.AddMembers(ctx, sd.groups[g], []string{u.ID}); err != nil {
				return err
			}
		}
		return nil
	})
	return id
}

func countAudit(t testing.TB, s store.Store) int {
	t.Helper()
	n := 0
	if err := s.Audit(context.Background(), store.AuditFilter{}, func(audit.Event) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func grantsOf(t testing.TB, s store.Store, userID string) map[string]directory.Grant {
	t.Helper()
	gs, err := s.ListGrants(context.Background(), store.GrantQuery{UserID: userID})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]directory.Grant{}
	for _, g := range gs {
		m[g.FirmNumber+":"+g.Service+"/"+g.Role] = g
	}
	return m
}

func TestReconcileAppliesAuditsAndIsIdempotent(t *testing.T) {
	forEachStore(t, testReconcileAppliesAuditsAndIsIdempotent)
}

func testReconcileAppliesAuditsAndIsIdempotent(t *testing.T, s store.Store) {
	ctx := context.Background()
	sd := newSeed(t, s)
	alice := sd.user(t, "alice@smith.example", "3856", "0Q731M,4C000A", "LAA Crime", "LAA CCMS Case Workers")
	bob := sd.user(t, "bob@smith.example", "3856", "", "Team A")
	r := New(s, launchEngine(t), Options{})

	dry, err := r.Full(ctx, RunOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	before := countAudit(t, s)
	if len(dry.Plan.Changes) != 5 || before != countAudit(t, s) {
		t.Fatalf("dry run plan %d changes", len(dry.Plan.Changes))
	}
	rep, err := r.Full(ctx, RunOptions{Trigger: "manual"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.PlanHash != dry.PlanHash {
		t.Error("--dry-run printed a different plan from the one applied")
	}
	if rep.Status != directory.RunOK || rep.Applied != 5 || rep.RunID == "" {
		t.Fatalf("report %+v", rep)
	}
	a := grantsOf(t, s, alice)
	if g, ok := a["3856:ccms/case-management"]; !ok || g.AllOffices || len(g.Offices) != 1 || g.Offices[0] != "0Q731M" {
		t.Errorf("alice case-management %+v (offices must be the firm's only)", g)
	}
	if len(a) != 3 {
		t.Errorf("alice grants %v", a)
	}
	b := grantsOf(t, s, bob)
	if _, ok := b["3856:ccms/case-management-supervisor"]; !ok {
		t.Errorf("bob (nested group) grants %v", b)
	}
	// every change audited by reconcile with the run id
	var events []audit.Event
	_ = s.Audit(ctx, store.AuditFilter{Actor: audit.ActorReconcile}, func(e audit.Event) error {
		if e.ObjectType == "grant" {
			events = append(events, e)
		}
		return nil
	})
	if len(events) != 5 {
		t.Fatalf("%d grant audit events by reconcile, want 5", len(events))
	}
	for _, e := range events {
		if e.RunID != rep.RunID {
			t.Errorf("event %d run id %q, want %q", e.Seq, e.RunID, rep.RunID)
		}
	}
	items, err := s.ListRunItems(ctx, store.RunItemQuery{RunID: rep.RunID, Limit: 100})
	if err != nil || len(items) != 5 {
		t.Fatalf("run items %d %v", len(items), err)
	}
	// second run: nothing to do, nothing written
	n := countAudit(t, s)
	rep2, err := r.Full(ctx, RunOptions{Trigger: "manual"})
	if err != nil {
		t.Fatal(err)
	}
	if rep2.Grants != 5 {
		t.Errorf("full run counted %d grants, want 5 (the guard's percentage base)", rep2.Grants)
	}
	if len(rep2.Plan.Changes) != 0 || rep2.RunID != "" || countAudit(t, s) != n {
		t.Fatalf("second run not a no-op: %d changes, run %q, audit %d -> %d", len(rep2.Plan.Changes), rep2.RunID, n, countAudit(t, s))
	}
}

func TestProvenanceWithStore(t *testing.T) { forEachStore(t, testProvenanceWithStore) }

func testProvenanceWithStore(t *testing.T, s store.Store) {
	ctx := context.Background()
	sd := newSeed(t, s)
	u := sd.user(t, "carol@smith.example", "3856", "0Q731M", "LAA CCMS Case Workers")
	r := New(s, launchEngine(t), Options{})
	manual := directory.Provenance{Kind: directory.ProvManual, Ref: "admin:support"}
	sd.update(t, func(ctx context.Context, tx store.Tx) error {
		// a manual grant rules do not produce, and one they do (other offices)
		if err := tx.PutGrant(ctx, &directory.Grant{UserID: u, FirmNumber: "3856", Service: "ccms", Role: "bill-preparation",
			Offices: []string{"1A001L"}, Provenance: []directory.Provenance{manual}}); err != nil {
			return err
		}
		return tx.PutGrant(ctx, &directory.Grant{UserID: u, FirmNumber: "3856", Service: "ccms", Role: "case-management",
			Offices: []string{"2B002X"}, Provenance: []directory.Provenance{manual}})
	})
	if _, err := r.Full(ctx, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	g := grantsOf(t, s, u)
	if p := g["3856:ccms/bill-preparation"].Provenance; len(p) != 1 || p[0] != manual {
		t.Errorf("manual-only grant touched: %+v", p)
	}
	cm := g["3856:ccms/case-management"]
	if len(cm.Provenance) != 2 || cm.Provenance[0] != manual || cm.Provenance[1].Kind != directory.ProvRule {
		t.Errorf("manual+rule grant provenance %+v", cm.Provenance)
	}
	if len(cm.Offices) != 2 {
		t.Errorf("manual+rule grant offices %v, want union", cm.Offices)
	}
	// the rule stops: the manual provenance keeps the grant
	sd.update(t, func(ctx context.Context, tx store.Tx) error {
		return tx.RemoveMembers(ctx, sd.groups["LAA CCMS Case Workers"], []string{u})
	})
	if _, err := r.Full(ctx, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	g = grantsOf(t, s, u)
	if p := g["3856:ccms/case-management"].Provenance; len(p) != 1 || p[0] != manual {
		t.Errorf("after the rule stopped: %+v", g)
	}
	// deprovisioning removes manual grants too
	sd.update(t, func(ctx context.Context, tx store.Tx) error {
		cur, err := tx.GetUser(ctx, u)
		if err != nil {
			return err
		}
		cur.Active = false
		return tx.UpdateUser(ctx, &cur, 0)
	})
	if _, err := r.Users(ctx, []string{u}, RunOptions{Trigger: "event"}); err != nil {
		t.Fatal(err)
	}
	if g := grantsOf(t, s, u); len(g) != 0 {
		t.Errorf("deprovisioned user keeps %v", g)
	}
}

func TestGuardHoldsThenApproveAppliesExactlyThePlan(t *testing.T) {
	forEachStore(t, testGuardHoldsThenApproveAppliesExactlyThePlan)
}

func testGuardHoldsThenApproveAppliesExactlyThePlan(t *testing.T, s store.Store) {
	ctx := context.Background()
	sd := newSeed(t, s)
	var ids []string
	for i := range 30 {
		ids = append(ids, sd.user(t, fmt.Sprintf("u%02d@smith.example", i), "3856", "", "LAA Crime"))
	}
	r := New(s, launchEngine(t), Options{Guard: Guard{MinRevokes: 50, Percent: 5}, BatchSize: 7})
	if rep, err := r.Full(ctx, RunOptions{}); err != nil || rep.Applied != 60 {
		t.Fatalf("initial run %+v %v", rep, err)
	}
	// everyone leaves: 60 revokes > max(50, 5% of 60)
	sd.update(t, func(ctx context.Context, tx store.Tx) error {
		return tx.RemoveMembers(ctx, sd.groups["LAA Crime"], ids)
	})
	n := countAudit(t, s)
	rep, err := r.Full(ctx, RunOptions{Trigger: "schedule"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Status != directory.RunHeld || rep.Applied != 0 {
		t.Fatalf("not held: %+v", rep)
	}
	all, _ := s.ListGrants(ctx, store.GrantQuery{})
	if len(all) != 60 {
		t.Fatalf("a held run applied something: %d grants left", len(all))
	}
	run, err := s.GetRun(ctx, rep.RunID)
	if err != nil || run.Status != directory.RunHeld || run.PlanHash != rep.PlanHash || len(run.Plan) == 0 {
		t.Fatalf("held run %+v %v", run, err)
	}
	for _, e := range auditSince(t, s, n) {
		if e.ObjectType == "grant" {
			t.Fatalf("held run wrote grant event %+v", e)
		}
	}
	if _, err := r.Approve(ctx, rep.RunID, "deadbeef", "admin:support"); err == nil {
		t.Fatal("approve with a wrong hash applied")
	}
	app, err := r.Approve(ctx, rep.RunID, rep.PlanHash, "admin:support")
	if err != nil {
		t.Fatal(err)
	}
	if app.Applied != 60 {
		t.Fatalf("approve applied %d", app.Applied)
	}
	if all, _ := s.ListGrants(ctx, store.GrantQuery{}); len(all) != 0 {
		t.Fatalf("%d grants after approve", len(all))
	}
	run, _ = s.GetRun(ctx, rep.RunID)
	if run.Status != directory.RunOK {
		t.Errorf("approved run status %s", run.Status)
	}
	if _, err := r.Approve(ctx, rep.RunID, rep.PlanHash, "admin:support"); err == nil {
		t.Error("a run was approved twice")
	}
	if rep, _ := r.Full(ctx, RunOptions{}); len(rep.Plan.Changes) != 0 {
		t.Errorf("after approval the next run plans %d changes", len(rep.Plan.Changes))
	}
}

// heldRun seeds n users (e-mails PREFIXnn@smith.example) in LAA Crime,
// grants them by a full run, takes them all out of the group and returns
// the held run of the next full run (a guard that holds any revoke).
func heldRun(t *testing.T, s store.Store, prefix string, n int) (*seed, *Reconciler, []string, *Report) {
	t.Helper()
	ctx := context.Background()
	sd := newSeed(t, s)
	var ids []string
	for i := range n {
		ids = append(ids, sd.user(t, fmt.Sprintf("%s%02d@smith.example", prefix, i), "3856", "", "LAA Crime"))
	}
	r := New(s, launchEngine(t), Options{Guard: Guard{MinRevokes: 1, Percent: 0}})
	if _, err := r.Full(ctx, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	sd.update(t, func(ctx context.Context, tx store.Tx) error {
		return tx.RemoveMembers(ctx, sd.groups["LAA Crime"], ids)
	})
	rep, err := r.Full(ctx, RunOptions{})
	if err != nil || rep.Status != directory.RunHeld {
		t.Fatalf("%+v %v", rep, err)
	}
	return sd, r, ids, rep
}

func TestApproveRefusesAStalePlan(t *testing.T) { forEachStore(t, testApproveRefusesAStalePlan) }

func testApproveRefusesAStalePlan(t *testing.T, s store.Store) {
	ctx := context.Background()
	sd, r, ids, rep := heldRun(t, s, "s", 3)
	// someone changes a planned grant meanwhile
	sd.update(t, func(ctx context.Context, tx store.Tx) error {
		return tx.PutGrant(ctx, &directory.Grant{UserID: ids[0], FirmNumber: "3856", Service: "crime-apply", Role: "access", AllOffices: true,
			Provenance: []directory.Provenance{{Kind: directory.ProvManual, Ref: "admin:x"}}})
	})
	if _, err := r.Approve(ctx, rep.RunID, rep.PlanHash, "admin:support"); err == nil {
		t.Fatal("approved a plan whose grants changed since")
	}
	if all, _ := s.ListGrants(ctx, store.GrantQuery{}); len(all) != 6 {
		t.Fatalf("a refused approval applied something: %d grants", len(all))
	}
}

func auditSince(t testing.TB, s store.Store, n int) []audit.Event {
	t.Helper()
	var out []audit.Event
	i := 0
	_ = s.Audit(context.Background(), store.AuditFilter{}, func(e audit.Event) error {
		i++
		if i > n {
			out = append(out, e)
		}
		return nil
	})
	return out
}

// TestWorkerReconcilesChangedUsers: a change enqueued for a user reaches the
// store through the worker (event-driven path, real store).
func TestWorkerReconcilesChangedUsers(t *testing.T) {
	forEachStore(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		sd := newSeed(t, s)
		u := sd.user(t, "dora@smith.example", "3856", "")
		r := New(s, launchEngine(t), Options{})
		batches := make(chan error, 10)
		w := NewWorker(r, WorkerOptions{OnBatch: func(ids []string, err error) { batches <- err }})
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { _ = w.Run(wctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })

		sd.update(t, func(ctx context.Context, tx store.Tx) error {
			return tx.AddMembers(ctx, sd.groups["LAA Crime"], []string{u})
		})
		w.Enqueue(ctx, u, u)
		select {
		case err := <-batches:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("worker did not reconcile")
		}
		g := grantsOf(t, s, u)
		if _, ok := g["3856:crime-apply/access"]; !ok || len(g) != 2 {
			t.Fatalf("grants after the event %v", g)
		}
		var events int
		_ = s.Audit(ctx, store.AuditFilter{Actor: audit.ActorReconcile}, func(e audit.Event) error {
			if e.ObjectType == "grant" && e.RunID != "" {
				events++
			}
			return nil
		})
		if events != 2 {
			t.Errorf("%d audited grant events with a run id, want 2", events)
		}
	})
}

// TestConcurrentApprovalsApplyOnce: of several approvals of one held run at
// once, one applies the plan; the others are refused (not held any more, or
// the plan already applied) and record no approval, and the run keeps the
// applying one's counts.
func TestConcurrentApprovalsApplyOnce(t *testing.T) {
	forEachStore(t, testConcurrentApprovalsApplyOnce)
}

func testConcurrentApprovalsApplyOnce(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, r, _, rep := heldRun(t, s, "c", 20)
	const n = 4
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := range n {
		go func() {
			<-start
			_, err := r.Approve(ctx, rep.RunID, rep.PlanHash, fmt.Sprintf("admin:support%d", i))
			errs <- err
		}()
	}
	close(start)
	ok := 0
	for range n {
		err := <-errs
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrNotHeld) || errors.Is(err, ErrPlanStale):
		default:
			t.Errorf("approval failed otherwise: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d approvals applied, want 1", ok)
	}
	approvals := 0
	_ = s.Audit(ctx, store.AuditFilter{}, func(e audit.Event) error {
		if e.Action == "run.approve" && e.ObjectID == rep.RunID {
			approvals++
		}
		return nil
	})
	run, err := s.GetRun(ctx, rep.RunID)
	if err != nil || approvals != 1 || run.Status != directory.RunOK || run.Counts["applied"] != int64(len(rep.Plan.Changes)) {
		t.Fatalf("%d approval events, run %s counts %v (plan of %d), %v", approvals, run.Status, run.Counts, len(rep.Plan.Changes), err)
	}
	if all, _ := s.ListGrants(ctx, store.GrantQuery{}); len(all) != 0 {
		t.Fatalf("%d grants left after the approval", len(all))
	}
}
