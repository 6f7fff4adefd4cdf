package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"sync"

	"go.uber.org/zap"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
)

// RunContext is what a JobFunc knows about its run and how it reports.
// Its methods are safe for concurrent use.
type RunContext struct {
	RunID   string
	Job     string // job name from config
	Kind    string
	Trigger string // TriggerSchedule or TriggerManual
	Params  map[string]string
	Log     *zap.Logger // carries job and run_id

	ctx    context.Context
	cancel context.CancelFunc
	run    directory.Run

	mu       sync.Mutex
	abortWhy string // why the scheduler cancelled the run, if it did
	counts   map[string]int64
	held     string
	planHash string
	plan     json.RawMessage
}

// Meta returns the audit metadata for changes this run makes as actor
// (e.g. "ldap:corp", audit.ActorReconcile).
func (r *RunContext) Meta(actor string) audit.Meta { return audit.Meta{Actor: actor, RunID: r.RunID} }

// Add adds n to the named count (created, updated, gone, ...).
func (r *RunContext) Add(name string, n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.counts == nil {
		r.counts = map[string]int64{}
	}
	r.counts[name] += n
}

// SetCount sets the named count.
func (r *RunContext) SetCount(name string, n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.counts == nil {
		r.counts = map[string]int64{}
	}
	r.counts[name] = n
}

// Counts returns a copy of the counts so far.
func (r *RunContext) Counts() map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.counts)
}

// Hold marks the run held (a guard stopped it before applying; the plan
// waits for approval). reason is recorded as the run's error text. A held
// run that returns nil is recorded as held, not ok.
func (r *RunContext) Hold(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.held = reason
	if r.held == "" {
		r.held = "held"
	}
}

// SetPlan stores the run's plan (typically with Hold).
func (r *RunContext) SetPlan(hash string, plan json.RawMessage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.planHash, r.plan = hash, plan
}

// abort cancels the run, saying why (recorded as its error).
func (r *RunContext) abort(why string) {
	r.mu.Lock()
	r.abortWhy = why
	r.mu.Unlock()
	r.Log.Warn("run cancelled", zap.String("reason", why))
	r.cancel()
}

// result turns the job's return into the run's final fields.
func (r *RunContext) result(err error) directory.Run {
	r.mu.Lock()
	defer r.mu.Unlock()
	run := r.run
	run.Counts = maps.Clone(r.counts)
	run.PlanHash, run.Plan = r.planHash, r.plan
	cancelled := r.ctx.Err() != nil
	switch {
	case cancelled:
		run.Status = directory.RunAborted
		run.Error = "aborted: the run was cancelled (shutdown deadline passed or caller gave up)"
		if r.abortWhy != "" {
			run.Error = "aborted: " + r.abortWhy
		}
		if err != nil {
			run.Error += ": " + err.Error()
		}
	case errors.Is(err, ErrAborted):
		run.Status = directory.RunAborted
		run.Error = err.Error()
	case err != nil:
		run.Status = directory.RunFailed
		run.Error = err.Error()
	case r.held != "":
		run.Status = directory.RunHeld
		run.Error = r.held
	default:
		run.Status = directory.RunOK
	}
	return run
}
