package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/mapping"
	"github.com/dirsyncd/dirsyncd/store"
)

// JobName is the run job name and scheduler job kind of reconciles.
const JobName = "reconcile"

// Guard holds a run that would revoke more than max(MinRevokes, Percent% of
// all grants).
type Guard struct {
	MinRevokes int
	Percent    float64
}

// Limit is the most revokes a run may make without approval.
func (g Guard) Limit(totalGrants int) int {
	p := int(float64(totalGrants) * g.Percent / 100)
	return max(g.MinRevokes, p)
}

// Options configure a Reconciler.
type Options struct {
	Guard     Guard
	BatchSize int // changes per transaction (default 500)
	// Workers evaluate a page of users in parallel in a full run (pure CPU:
	// the facts are already read); default GOMAXPROCS.
	Workers int
	// Outbox writes a CCMS message (audit event ccms.enqueue) in the same
	// transaction as every applied batch that changes a user's CCMS-coded
	// roles; Outbox.Deliver sends them.
	Outbox bool
	// LinkSources is ignored: a full run now reads every source's links in
	// bulk by user-id range (kept so existing configurations still load).
	LinkSources []string
	Logger      *zap.Logger
	Now         func() time.Time
}

// Reconciler plans and applies reconciles.
type Reconciler struct {
	outbox  bool
	s       Store
	workers int
	engine  *mapping.Engine
	guard   Guard
	batch   int
	log     *zap.Logger
	now     func() time.Time
}

// New returns a Reconciler.
func New(s Store, e *mapping.Engine, o Options) *Reconciler {
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.Guard.MinRevokes == 0 && o.Guard.Percent == 0 {
		o.Guard = Guard{MinRevokes: 50, Percent: 5}
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	return &Reconciler{outbox: o.Outbox, s: s, workers: o.Workers, engine: e, guard: o.Guard, batch: o.BatchSize, log: o.Logger.Named("reconcile"), now: o.Now}
}

// RunOptions select how a run is made.
type RunOptions struct {
	DryRun  bool   // plan only: nothing is written
	Trigger string // "schedule", "manual" or "event"
	// RunID names a run already created (e.g. by the scheduler); when empty
	// a run record is created only if there is something to apply or hold.
	RunID string
}

// Report is the outcome of a run.
type Report struct {
	RunID    string              `json:"runId,omitempty"`
	Status   directory.RunStatus `json:"status"`
	Users    int                 `json:"users"`
	Grants   int                 `json:"grants"` // actual grants before the run (full runs)
	Plan     *Plan               `json:"plan"`
	PlanHash string              `json:"planHash"`
	Applied  int                 `json:"applied"`
	Skipped  int                 `json:"skipped"` // changed since planned: left for the next run
	Held     string              `json:"held,omitempty"`
	Failed   map[string]string   `json:"failed,omitempty"` // user id -> error (event runs)
	// Conflicts are roles rules would grant but refused because they
	// conflict with one held or granted first (at most MaxConflicts listed;
	// ConflictCount counts them all).
	Conflicts     []UserConflict `json:"conflicts,omitempty"`
	ConflictCount int            `json:"conflictCount,omitempty"`
}

// UserConflict is a conflict the engine reported for one user.
type UserConflict struct {
	UserID   string `json:"userId"`
	UserName string `json:"userName,omitempty"`
	mapping.Conflict
}

// MaxConflicts bounds the conflicts listed in a report.
const MaxConflicts = 1000

func (rep *Report) addConflicts(u directory.User, cs []mapping.Conflict) {
	for _, c := range cs {
		rep.ConflictCount++
		if len(rep.Conflicts) < MaxConflicts {
			rep.Conflicts = append(rep.Conflicts, UserConflict{UserID: u.ID, UserName: u.UserName, Conflict: c})
		}
	}
}

// Approve's refusals (nothing applied): the plan hash does not match, the
// run is not (or no longer) held, a planned grant changed since the plan.
var (
	ErrPlanMismatch = errors.New("plan hash does not match the held run")
	ErrNotHeld      = errors.New("run is not held")
	ErrPlanStale    = errors.New("a grant changed since the plan was made; run reconcile again")
)

// Full reconciles every user. It streams the users in id order, a page at
// a time, reading each page's facts in one query per kind (the next page is
// read while the current one is evaluated), so it holds a page of grants,
// not all of them. It fails, planning nothing, when any read fails or fewer
// users were read than the store counted at the start.
func (r *Reconciler) Full(ctx context.Context, o RunOptions) (*Report, error) {
	w, err := loadWorld(ctx, r.s)
	if err != nil {
		return nil, err
	}
	counted, err := r.s.ListUsers(ctx, store.UserQuery{Limit: 0, IncludeDeleted: true})
	if err != nil {
		return nil, fmt.Errorf("reconcile: count users: %w", err)
	}
	grants, err := r.s.CountGrants(ctx)
	if err != nil {
		return nil, err
	}
	pages := make(chan *page, 1)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { // reader: one page ahead of the evaluation
		defer close(pages)
		after := ""
		for {
			p, err := loadPage(gctx, r.s, after, pageSize)
			if err != nil {
				return err
			}
			if len(p.users) == 0 {
				return nil
			}
			select {
			case pages <- p:
			case <-gctx.Done():
				return gctx.Err()
			}
			if len(p.users) < pageSize {
				return nil
			}
			after = p.users[len(p.users)-1].ID
		}
	})
	plan := &Plan{Changes: []Change{}}
	found := &Report{} // conflicts
	users := 0
	skippable := r.engine.NeedsOnlyGroupsOrLegacy()
	g.Go(func() error {
		for p := range pages {
			changes := make([][]Change, len(p.users))
			conflicts := make([][]mapping.Conflict, len(p.users))
			eval := func(lo, hi int) {
				for i := lo; i < hi; i++ {
					u := p.users[i]
					if skippable && len(p.groups[i]) == 0 && len(p.legacy[i]) == 0 && len(p.grants[i]) == 0 {
						continue // no rule can match and nothing is held: nothing to plan
					}
					res := r.engine.Evaluate(w.pageFacts(p, i))
					changes[i], conflicts[i] = diffUser(u, res, p.grants[i]), res.Conflicts
				}
			}
			if r.workers == 1 {
				eval(0, len(p.users))
			} else { // pure CPU: one contiguous chunk per worker
				var wg sync.WaitGroup
				chunk := (len(p.users) + r.workers - 1) / r.workers
				for lo := 0; lo < len(p.users); lo += chunk {
					wg.Add(1)
					go func() { defer wg.Done(); eval(lo, min(lo+chunk, len(p.users))) }()
				}
				wg.Wait()
			}
			for i, c := range changes {
				plan.Changes = append(plan.Changes, c...)
				found.addConflicts(p.users[i], conflicts[i])
			}
			users += len(p.users)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if int64(users) < counted.Total {
		return nil, fmt.Errorf("reconcile: list users: read %d of %d", users, counted.Total)
	}
	plan.sort()
	return r.finish(ctx, plan, users, int(grants), found, o)
}

// Users reconciles the given users only (event-driven). A failed read
// aborts the whole call, planning nothing (the worker then retries each
// user alone); a user that does not exist is skipped.
func (r *Reconciler) Users(ctx context.Context, ids []string, o RunOptions) (*Report, error) {
	w, err := loadWorld(ctx, r.s)
	if err != nil {
		return nil, err
	}
	plan := &Plan{Changes: []Change{}}
	found := &Report{} // conflicts
	total := 0
	for _, id := range ids {
		u, err := r.s.GetUser(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reconcile: get user %s: %w", id, err)
		}
		f, err := w.facts(ctx, r.s, u)
		if err != nil {
			return nil, err
		}
		total += len(f.Grants)
		res := r.engine.Evaluate(f)
		plan.Changes = append(plan.Changes, diffUser(u, res, f.Grants)...)
		found.addConflicts(u, res.Conflicts)
	}
	plan.sort()
	return r.finish(ctx, plan, len(ids), total, found, o)
}

// PlanFor computes the plan for one user without writing (explain, tests).
func (r *Reconciler) PlanFor(ctx context.Context, userID string) (*Plan, error) {
	rep, err := r.Users(ctx, []string{userID}, RunOptions{DryRun: true})
	if err != nil {
		return nil, err
	}
	return rep.Plan, nil
}

func (r *Reconciler) finish(ctx context.Context, plan *Plan, users, grants int, found *Report, o RunOptions) (*Report, error) {
	rep := &Report{Status: directory.RunOK, Users: users, Grants: grants, Plan: plan, PlanHash: plan.Hash(), RunID: o.RunID,
		Conflicts: found.Conflicts, ConflictCount: found.ConflictCount}
	if rep.ConflictCount > 0 {
		r.log.Warn("role conflicts refused", zap.Int("conflicts", rep.ConflictCount))
	}
	counts := plan.Counts()
	if o.DryRun {
		return rep, nil
	}
	if limit := r.guard.Limit(grants); counts[ActRevoke] > limit {
		rep.Status = directory.RunHeld
		rep.Held = fmt.Sprintf("plan revokes %d grants, more than the limit %d (max(%d, %g%% of %d)); approve with: dirsyncd runs approve RUN --plan-hash %s",
			counts[ActRevoke], limit, r.guard.MinRevokes, r.guard.Percent, grants, rep.PlanHash)
		if err := r.hold(ctx, rep, o.Trigger); err != nil {
			return nil, err
		}
		r.log.Warn("run held", zap.String("run_id", rep.RunID), zap.Int("revokes", counts[ActRevoke]), zap.Int("limit", limit))
		return rep, nil
	}
	if len(plan.Changes) == 0 && rep.RunID == "" {
		return rep, nil // nothing to do: write nothing
	}
	if err := r.apply(ctx, rep, o.Trigger, o.RunID == ""); err != nil {
		return rep, err
	}
	return rep, nil
}

func (r *Reconciler) ensureRun(ctx context.Context, rep *Report, trigger string) error {
	if rep.RunID != "" {
		return nil
	}
	if trigger == "" {
		trigger = "manual"
	}
	run := &directory.Run{Job: JobName, Trigger: trigger, Status: directory.RunRunning, StartedAt: r.now()}
	err := r.s.Update(ctx, audit.Meta{Actor: audit.ActorReconcile}, func(ctx context.Context, tx store.Tx) error {
		return tx.CreateRun(ctx, run)
	})
	if err != nil {
		return fmt.Errorf("reconcile: create run: %w", err)
	}
	rep.RunID = run.ID
	return nil
}

func (r *Reconciler) hold(ctx context.Context, rep *Report, trigger string) error {
	if err := r.ensureRun(ctx, rep, trigger); err != nil {
		return err
	}
	b, err := json.Marshal(rep.Plan)
	if err != nil {
		return fmt.Errorf("reconcile: encode plan: %w", err)
	}
	return r.s.Update(ctx, audit.Meta{Actor: audit.ActorReconcile, RunID: rep.RunID}, func(ctx context.Context, tx store.Tx) error {
		run, err := tx.GetRun(ctx, rep.RunID)
		if err != nil {
			return fmt.Errorf("reconcile: get run %s: %w", rep.RunID, err)
		}
		run.Status, run.PlanHash, run.Plan, run.Error = directory.RunHeld, rep.PlanHash, b, rep.Held
		run.Counts = countsOf(rep)
		if err := tx.UpdateRun(ctx, &run); err != nil {
			return fmt.Errorf("reconcile: hold run %s: %w", rep.RunID, err)
		}
		return nil
	})
}

func countsOf(rep *Report) map[string]int64 {
	m := map[string]int64{"users": int64(rep.Users), "applied": int64(rep.Applied), "skipped": int64(rep.Skipped), "conflicts": int64(rep.ConflictCount)}
	for a, n := range rep.Plan.Counts() {
		m[string(a)] = int64(n)
	}
	return m
}

// apply writes the plan in batches, each one transaction audited with actor
// reconcile and the run id; a change whose grant no longer looks as planned
// is skipped (the next run re-plans it). With finishRun it also records the
// run's outcome (otherwise whoever created the run, the scheduler, does).
func (r *Reconciler) apply(ctx context.Context, rep *Report, trigger string, finishRun bool) error {
	if err := r.ensureRun(ctx, rep, trigger); err != nil {
		return err
	}
	meta := audit.Meta{Actor: audit.ActorReconcile, RunID: rep.RunID}
	changes := rep.Plan.Changes
	var applyErr error
	for start := 0; start < len(changes) && applyErr == nil; start += r.batch {
		batch := changes[start:min(start+r.batch, len(changes))]
		applied, skipped := 0, 0
		err := r.s.Update(ctx, meta, func(ctx context.Context, tx store.Tx) error {
			applied, skipped = 0, 0
			items := make([]directory.RunItem, 0, len(batch))
			for _, c := range batch {
				ok, err := applyChange(ctx, tx, c)
				if err != nil {
					return err
				}
				item := directory.RunItem{RunID: rep.RunID, Action: string(c.Action), ObjectType: "grant",
					ObjectID: grantID(c), Reason: c.Reason, Before: marshal(c.Before), After: marshal(c.After)}
				if ok {
					applied++
				} else {
					skipped++
					item.Action = "skipped"
					item.Reason = "changed since planned; " + c.Reason
				}
				items = append(items, item)
			}
			if r.outbox {
				msgs, err := ccmsMessages(ctx, tx, r.engine.Catalogue(), batch)
				if err != nil {
					return err
				}
				if err := recordMessages(ctx, tx, msgs); err != nil {
					return err
				}
			}
			return tx.AddRunItems(ctx, items)
		})
		if err != nil {
			applyErr = fmt.Errorf("reconcile: apply batch at %d: %w", start, err)
			break
		}
		rep.Applied += applied
		rep.Skipped += skipped
	}
	status := directory.RunOK
	if applyErr != nil {
		status = directory.RunFailed
	}
	rep.Status = status
	if !finishRun {
		return applyErr
	}
	err := r.s.Update(context.WithoutCancel(ctx), meta, func(ctx context.Context, tx store.Tx) error {
		run, err := tx.GetRun(ctx, rep.RunID)
		if err != nil {
			return err
		}
		now := r.now()
		run.Status, run.FinishedAt, run.Counts, run.PlanHash = status, &now, countsOf(rep), rep.PlanHash
		if applyErr != nil {
			run.Error = applyErr.Error()
		}
		return tx.UpdateRun(ctx, &run)
	})
	if applyErr != nil {
		return applyErr
	}
	if err != nil {
		return fmt.Errorf("reconcile: finish run %s: %w", rep.RunID, err)
	}
	r.log.Info("run applied", zap.String("run_id", rep.RunID), zap.Int("applied", rep.Applied), zap.Int("skipped", rep.Skipped))
	return nil
}

func grantID(c Change) string {
	return c.UserID + "/" + c.Firm + "/" + c.Service + "/" + c.Role
}

func marshal(v *Scope) json.RawMessage {
	if v == nil {
		return nil
	}
	b, _ := json.Marshal(v)
	return b
}

// current reports whether the stored grant still looks as c.Before says.
func current(ctx context.Context, rd interface {
	GetGrant(ctx context.Context, k directory.GrantKey) (directory.Grant, error)
}, c Change) (bool, error) {
	g, err := rd.GetGrant(ctx, c.Key())
	if errors.Is(err, store.ErrNotFound) {
		return c.Before == nil, nil
	}
	if err != nil {
		return false, fmt.Errorf("reconcile: get grant %s: %w", grantID(c), err)
	}
	return c.Before != nil && scopeOf(g).equal(c.Before), nil
}

func applyChange(ctx context.Context, tx store.Tx, c Change) (bool, error) {
	ok, err := current(ctx, tx, c)
	if err != nil || !ok {
		return false, err
	}
	switch c.Action {
	case ActRevoke:
		if err := tx.DeleteGrant(ctx, c.Key()); err != nil {
			return false, fmt.Errorf("reconcile: revoke %s: %w", grantID(c), err)
		}
	case ActGrant, ActUpdate:
		g := &directory.Grant{UserID: c.UserID, FirmNumber: c.Firm, Service: c.Service, Role: c.Role,
			AllOffices: c.After.AllOffices, Offices: c.After.Offices, Provenance: c.After.Provenance}
		if err := tx.PutGrant(ctx, g); err != nil {
			return false, fmt.Errorf("reconcile: %s %s: %w", c.Action, grantID(c), err)
		}
	default:
		return false, fmt.Errorf("reconcile: unknown action %q", c.Action)
	}
	return true, nil
}

// Approve applies the plan of a held run, exactly: hash must equal the
// run's plan hash and the hash of the stored plan, and every grant must
// still look as planned (otherwise nothing is applied: run reconcile again).
func (r *Reconciler) Approve(ctx context.Context, runID, hash, approver string) (*Report, error) {
	run, err := r.s.GetRun(ctx, runID)
	if err != nil {
		return nil, fmt.Errorf("reconcile: get run %s: %w", runID, err)
	}
	if run.Status != directory.RunHeld {
		return nil, fmt.Errorf("reconcile: run %s is %s: %w", runID, run.Status, ErrNotHeld)
	}
	var plan Plan
	if err := json.Unmarshal(run.Plan, &plan); err != nil {
		return nil, fmt.Errorf("reconcile: decode plan of run %s: %w", runID, err)
	}
	if hash != run.PlanHash || plan.Hash() != run.PlanHash {
		return nil, fmt.Errorf("reconcile: approve run %s: %w", runID, ErrPlanMismatch)
	}
	for _, c := range plan.Changes {
		ok, err := current(ctx, r.s, c)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("reconcile: approve run %s: grant %s: %w", runID, grantID(c), ErrPlanStale)
		}
	}
	// The approval takes the run from held to running in one transaction
	// that locks the run's row: of two approvals at once, the second finds
	// it running and is refused, instead of applying the plan again.
	err = r.s.Update(ctx, audit.Meta{Actor: approver, RunID: runID}, func(ctx context.Context, tx store.Tx) error {
		cur, err := tx.GetRun(ctx, runID)
		if err != nil {
			return err
		}
		if cur.Status != directory.RunHeld || cur.PlanHash != hash {
			return fmt.Errorf("run %s is %s: %w", runID, cur.Status, ErrNotHeld)
		}
		cur.Status = directory.RunRunning
		if err := tx.UpdateRun(ctx, &cur); err != nil {
			return err
		}
		return tx.Record(ctx, "run.approve", "run", runID, nil, map[string]string{"planHash": hash})
	})
	if err != nil {
		return nil, fmt.Errorf("reconcile: record approval of run %s: %w", runID, err)
	}
	rep := &Report{RunID: runID, Plan: &plan, PlanHash: hash}
	if err := r.apply(ctx, rep, run.Trigger, true); err != nil {
		return rep, err
	}
	return rep, nil
}
