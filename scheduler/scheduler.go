package scheduler

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/robfig/cron/v3"
	"go.uber.org/zap"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// Triggers recorded on a run.
const (
	TriggerSchedule = "schedule"
	TriggerManual   = "manual"
)

// LeaseName is the store lease the leader holds.
const LeaseName = "scheduler"

// jobLease is the store lease a run holds while it runs: the busy check of
// begin is one process's, and a manual trigger may come to any replica (or
// to the CLI beside the daemon), so without it the same job could run twice
// at once on one store. Renewed every LeaseTTL/3 during the run, released
// at its end; a run that cannot keep it is aborted.
func jobLease(job string) string { return "job:" + job }

// Errors returned by Trigger and Execute.
var (
	ErrUnknownJob = errors.New("scheduler: unknown job")
	ErrBusy       = errors.New("scheduler: job is already running")
	ErrStopped    = errors.New("scheduler: shutting down")
)

// JobFunc does one run of a job. It returns nil on success; an error marks
// the run failed with that error. It must honour ctx: when ctx is
// cancelled (shutdown deadline passed) it should return promptly, and the
// run is marked aborted.
type JobFunc func(ctx context.Context, run *RunContext) error

// Job is one configured job.
type Job struct {
	Name     string
	Kind     string
	Schedule string // cron expression (config.CronParser); "" = manual only
	Params   map[string]string
}

// Store is what the scheduler needs from the store.
type Store interface {
	Update(ctx context.Context, m audit.Meta, fn func(ctx context.Context, tx store.Tx) error) error
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error
}

// Metrics receives the outcome of every run (server.Metrics implements it).
type Metrics interface {
	ObserveRun(job string, status directory.RunStatus, d time.Duration)
}

// Options configure a Scheduler. Store, Jobs and Funcs are required.
type Options struct {
	Store   Store
	Jobs    []Job
	Funcs   map[string]JobFunc // by job kind
	Logger  *zap.Logger
	Metrics Metrics
	// Holder names this replica in the lease (default hostname-pid-random).
	Holder string
	// LeaseTTL is how long the lease lasts without renewal (default 30s);
	// it is renewed every LeaseTTL/3.
	LeaseTTL time.Duration
	// ShutdownTimeout is how long runs in flight may go on after Run's
	// context ends (default 30s).
	ShutdownTimeout time.Duration
	Now             func() time.Time // default time.Now
	// After replaces time.After for the renewal ticks and the shutdown
	// deadline (tests).
	After func(time.Duration) <-chan time.Time
	// NewID makes run ids (default random UUIDs).
	NewID func() string
}

// Scheduler runs jobs. Create it with New and start it with Run.
type Scheduler struct {
	o    Options
	log  *zap.Logger
	jobs map[string]Job
	cron *cron.Cron

	// jobCtx is the parent of every run's context; it outlives Run's
	// context by the shutdown deadline, then is cancelled.
	jobCtx    context.Context
	cancelJob context.CancelFunc

	mu       sync.Mutex
	leader   bool
	cronOn   bool
	stopping bool
	running  map[string]*RunContext // job name -> its run in flight (nil while it starts)
	wg       sync.WaitGroup
}

// New checks the jobs (schedule parses, kind implemented) and builds the
// scheduler; nothing runs until Run.
func New(o Options) (*Scheduler, error) {
	if o.Store == nil {
		return nil, errors.New("scheduler: no store")
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = config.DefaultLeaseTTL
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = config.DefaultShutdownTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.After == nil {
		o.After = time.After
	}
	if o.NewID == nil {
		o.NewID = uuid.NewString
	}
	if o.Holder == "" {
		host, _ := os.Hostname()
		o.Holder = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), uuid.NewString()[:8])
	}
	s := &Scheduler{o: o, log: o.Logger, jobs: map[string]Job{}, running: map[string]*RunContext{}}
	s.jobCtx, s.cancelJob = context.WithCancel(context.Background())
	logger := cronLogger{s.log}
	s.cron = cron.New(
		cron.WithLocation(time.UTC),
		cron.WithParser(config.CronParser),
		cron.WithLogger(logger),
		cron.WithChain(cron.Recover(logger), cron.SkipIfStillRunning(logger)),
	)
	for _, j := range o.Jobs {
		if _, dup := s.jobs[j.Name]; dup || j.Name == "" {
			return nil, fmt.Errorf("scheduler: job %q: empty or duplicate name", j.Name)
		}
		if o.Funcs[j.Kind] == nil {
			return nil, fmt.Errorf("scheduler: job %q: no implementation of kind %q in this binary", j.Name, j.Kind)
		}
		s.jobs[j.Name] = j
		if j.Schedule == "" {
			continue
		}
		if _, err := s.cron.AddJob(j.Schedule, scheduled{s: s, name: j.Name}); err != nil {
			return nil, fmt.Errorf("scheduler: job %q: schedule %q: %w", j.Name, j.Schedule, err)
		}
	}
	return s, nil
}

// Jobs returns the configured job names, sorted.
func (s *Scheduler) Jobs() []string { return slices.Sorted(maps.Keys(s.jobs)) }

// Leader reports whether this scheduler holds the lease.
func (s *Scheduler) Leader() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leader
}

// Campaign tries once to take or renew the lease and starts or stops the
// cron accordingly. Run calls it every LeaseTTL/3; it is exported for the
// CLI and tests. A store error counts as not leading (a replica that cannot
// reach the store must not fire jobs).
func (s *Scheduler) Campaign(ctx context.Context) (bool, error) {
	ok, err := s.o.Store.AcquireLease(ctx, LeaseName, s.o.Holder, s.o.LeaseTTL)
	if err != nil {
		ok = false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok != s.leader {
		if ok {
			s.log.Info("leadership acquired", zap.String("holder", s.o.Holder))
		} else {
			s.log.Warn("leadership lost", zap.String("holder", s.o.Holder), zap.Error(err))
		}
	}
	s.leader = ok
	switch {
	case ok && !s.cronOn && !s.stopping:
		s.cron.Start()
		s.cronOn = true
	case !ok && s.cronOn:
		s.cron.Stop() // new ticks stop
		s.cronOn = false
	}
	if !ok && err == nil {
		// Another replica holds the lease (ours lapsed): it fires the same
		// jobs, so this replica's scheduled runs in flight stop (recorded
		// aborted) rather than run beside its. A store error is not that:
		// the lease may still be ours, and the runs go on. Manual runs are
		// their requester's and go on.
		for _, rc := range s.running {
			if rc != nil && rc.Trigger == TriggerSchedule {
				rc.abort("this replica lost the scheduler lease to another replica, which runs the schedule now")
			}
		}
	}
	if err != nil {
		return false, fmt.Errorf("scheduler: campaign: %w", err)
	}
	return ok, nil
}

// Run campaigns for the lease until ctx ends, firing scheduled jobs while
// it leads. Then it stops the cron, gives runs in flight until the
// shutdown deadline, cancels those still going (they are recorded as
// aborted), releases the lease and returns nil.
func (s *Scheduler) Run(ctx context.Context) error {
	every := s.o.LeaseTTL / 3
	for {
		if ctx.Err() != nil {
			return s.shutdown()
		}
		if _, err := s.Campaign(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("lease", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return s.shutdown()
		case <-s.o.After(every):
		}
	}
}

func (s *Scheduler) shutdown() error {
	s.mu.Lock()
	s.stopping = true
	if s.cronOn {
		s.cron.Stop()
		s.cronOn = false
	}
	s.leader = false
	s.mu.Unlock()

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-s.o.After(s.o.ShutdownTimeout):
		s.log.Warn("shutdown deadline passed: cancelling runs in flight", zap.Duration("deadline", s.o.ShutdownTimeout))
		s.cancelJob()
		select {
		case <-done: // each run recorded itself as aborted
		case <-s.o.After(AbortGrace):
			s.abandon()
		}
	}
	s.cancelJob()
	// Release whether or not we think we lead (a no-op for a non-holder):
	// a renewal that raced with shutdown may have taken it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.o.Store.ReleaseLease(ctx, LeaseName, s.o.Holder); err != nil {
		s.log.Warn("release lease", zap.Error(err))
	}
	return nil
}

// AbortGrace is how long shutdown waits, after cancelling the runs in
// flight, for them to return; a run that ignores its context is then
// recorded as aborted by the scheduler itself and abandoned.
const AbortGrace = 5 * time.Second

// abandon records every run still in flight as aborted.
func (s *Scheduler) abandon() {
	s.mu.Lock()
	var stuck []*RunContext
	for _, rc := range s.running {
		if rc != nil {
			stuck = append(stuck, rc)
		}
	}
	s.mu.Unlock()
	for _, rc := range stuck {
		rc.Log.Error("run ignored cancellation; recording it as aborted and abandoning it")
		end := s.o.Now().UTC()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := s.o.Store.Update(ctx, audit.Meta{Actor: audit.ActorScheduler, RunID: rc.RunID}, func(ctx context.Context, tx store.Tx) error {
			cur, err := tx.GetRun(ctx, rc.RunID)
			if err != nil {
				return err
			}
			cur.Status, cur.FinishedAt = directory.RunAborted, &end
			cur.Error = "aborted: the run did not stop within the shutdown deadline and ignored cancellation"
			return tx.UpdateRun(ctx, &cur)
		})
		cancel()
		if err != nil {
			rc.Log.Error("record abandoned run", zap.Error(err))
		}
		if s.o.Metrics != nil {
			s.o.Metrics.ObserveRun(rc.Job, directory.RunAborted, end.Sub(rc.run.StartedAt))
		}
	}
}

// Trigger starts job name now, in the background, recorded as
// trigger=manual, and returns the run id once the run record exists.
func (s *Scheduler) Trigger(ctx context.Context, name string) (string, error) {
	rc, err := s.begin(ctx, name, TriggerManual)
	if err != nil {
		return "", err
	}
	go s.finish(rc)
	return rc.RunID, nil
}

// Execute runs job name in the caller's goroutine (the CLI's `run JOB`) and
// returns the finished run. ctx bounds the run: cancelling it aborts it.
func (s *Scheduler) Execute(ctx context.Context, name, trigger string) (directory.Run, error) {
	rc, err := s.begin(ctx, name, trigger)
	if err != nil {
		return directory.Run{}, err
	}
	stop := context.AfterFunc(ctx, rc.cancel)
	defer stop()
	return s.finish(rc), nil
}

type requesterKey struct{}

type requester struct{ by, requestID string }

// WithRequester notes on ctx who asks for a manual run (an audit actor
// such as "admin:ops", or "cli") and the HTTP request id, for Trigger and
// Execute: the run's audit events carry the request id and a
// "run.trigger" event names the requester.
func WithRequester(ctx context.Context, by, requestID string) context.Context {
	return context.WithValue(ctx, requesterKey{}, requester{by: by, requestID: requestID})
}

type scheduled struct {
	s    *Scheduler
	name string
}

// Run is called by cron on the schedule (wrapped in Recover and
// SkipIfStillRunning).
func (j scheduled) Run() {
	if !j.s.Leader() {
		return // lost the lease between ticks: the new leader runs it
	}
	rc, err := j.s.begin(context.Background(), j.name, TriggerSchedule)
	if err != nil {
		if !errors.Is(err, ErrBusy) && !errors.Is(err, ErrStopped) {
			j.s.log.Error("start scheduled run", zap.String("job", j.name), zap.Error(err))
		} else {
			j.s.log.Info("scheduled run skipped", zap.String("job", j.name), zap.Error(err))
		}
		return
	}
	j.s.finish(rc)
}

// begin claims the job, creates its run record and returns the context
// the job will run with.
func (s *Scheduler) begin(ctx context.Context, name, trigger string) (*RunContext, error) {
	job, ok := s.jobs[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownJob, name)
	}
	s.mu.Lock()
	switch {
	case s.stopping:
		s.mu.Unlock()
		return nil, ErrStopped
	}
	if _, busy := s.running[name]; busy {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrBusy, name)
	}
	s.running[name] = nil
	s.wg.Add(1)
	s.mu.Unlock()

	switch ok, err := s.o.Store.AcquireLease(ctx, jobLease(name), s.o.Holder, s.o.LeaseTTL); {
	case err != nil:
		s.release(name)
		return nil, fmt.Errorf("scheduler: lease of job %s: %w", name, err)
	case !ok:
		s.release(name)
		return nil, fmt.Errorf("%w: %s (running elsewhere: another replica or the CLI)", ErrBusy, name)
	}

	id := s.o.NewID()
	run := directory.Run{ID: id, Job: name, Trigger: trigger, Status: directory.RunRunning, StartedAt: s.o.Now().UTC()}
	req, _ := ctx.Value(requesterKey{}).(requester)
	// A manual trigger is the requester's action: they are the actor of the
	// run's creation and of its run.trigger event, so the audit log filtered
	// by that person shows it; what the run itself does is the job's.
	actor := audit.ActorScheduler
	if req.by != "" {
		actor = req.by
	}
	err := s.o.Store.Update(ctx, audit.Meta{Actor: actor, RunID: id, RequestID: req.requestID}, func(ctx context.Context, tx store.Tx) error {
		if err := tx.CreateRun(ctx, &run); err != nil {
			return err
		}
		if req.by == "" {
			return nil
		}
		return tx.Record(ctx, "run.trigger", "run", id, nil, map[string]string{"job": name, "by": req.by})
	})
	if err != nil {
		s.releaseJobLease(name)
		s.release(name)
		return nil, fmt.Errorf("scheduler: record run of %s: %w", name, err)
	}
	jctx, cancel := context.WithCancel(s.jobCtx)
	rc := &RunContext{
		RunID: id, Job: name, Kind: job.Kind, Trigger: trigger, Params: job.Params,
		Log:    s.log.With(zap.String("job", name), zap.String("run_id", id)),
		ctx:    jctx,
		cancel: cancel,
		run:    run,
	}
	s.mu.Lock()
	s.running[name] = rc
	s.mu.Unlock()
	return rc, nil
}

func (s *Scheduler) release(name string) {
	s.mu.Lock()
	delete(s.running, name)
	s.mu.Unlock()
	s.wg.Done()
}

func (s *Scheduler) releaseJobLease(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.o.Store.ReleaseLease(ctx, jobLease(name), s.o.Holder); err != nil {
		s.log.Warn("release job lease (it lapses by itself)", zap.String("job", name), zap.Error(err))
	}
}

// keepJobLease renews rc's job lease until done closes; a renewal that
// finds the lease taken (it lapsed and another took it) aborts the run.
// A store error is not that: the run goes on and the next renewal retries.
func (s *Scheduler) keepJobLease(rc *RunContext, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-s.o.After(s.o.LeaseTTL / 3):
		}
		ok, err := s.o.Store.AcquireLease(rc.ctx, jobLease(rc.Job), s.o.Holder, s.o.LeaseTTL)
		if err == nil && !ok {
			rc.abort("the job's lease lapsed and is held elsewhere, which may be running the same job")
			return
		}
		if err != nil && rc.ctx.Err() == nil {
			rc.Log.Warn("renew job lease", zap.Error(err))
		}
	}
}

// finish runs the job and records its outcome.
func (s *Scheduler) finish(rc *RunContext) directory.Run {
	defer s.release(rc.Job)
	defer s.releaseJobLease(rc.Job)
	defer rc.cancel()
	rc.Log.Info("run started", zap.String("trigger", rc.Trigger))
	done := make(chan struct{})
	go s.keepJobLease(rc, done)
	err := s.call(rc)
	close(done)

	run := rc.result(err)
	end := s.o.Now().UTC()
	run.FinishedAt = &end
	// Record even when the job's context is gone (aborted runs).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	uerr := s.o.Store.Update(ctx, audit.Meta{Actor: audit.ActorScheduler, RunID: rc.RunID}, func(ctx context.Context, tx store.Tx) error {
		cur, err := tx.GetRun(ctx, rc.RunID)
		if err != nil {
			return err
		}
		// The job may have written to its run (a held plan); keep that.
		cur.Status, cur.FinishedAt, cur.Error = run.Status, run.FinishedAt, run.Error
		if len(run.Counts) > 0 {
			if cur.Counts == nil {
				cur.Counts = map[string]int64{}
			}
			maps.Copy(cur.Counts, run.Counts)
		}
		if run.PlanHash != "" || run.Plan != nil {
			cur.PlanHash, cur.Plan = run.PlanHash, run.Plan
		}
		run = cur
		return tx.UpdateRun(ctx, &cur)
	})
	d := end.Sub(run.StartedAt)
	if uerr != nil {
		rc.Log.Error("record run outcome", zap.Error(uerr), zap.String("status", string(run.Status)))
	}
	if s.o.Metrics != nil {
		s.o.Metrics.ObserveRun(rc.Job, run.Status, d)
	}
	fields := []zap.Field{zap.String("status", string(run.Status)), zap.Duration("duration", d), zap.Any("counts", run.Counts)}
	if run.Status == directory.RunOK || run.Status == directory.RunHeld {
		rc.Log.Info("run finished", fields...)
	} else {
		rc.Log.Error("run finished", append(fields, zap.String("error", run.Error))...)
	}
	return run
}

// call runs the job function, turning a panic into an error.
func (s *Scheduler) call(rc *RunContext) (err error) {
	defer func() {
		if r := recover(); r != nil {
			rc.Log.Error("job panicked", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			err = fmt.Errorf("scheduler: job %s panicked: %v", rc.Job, r)
		}
	}()
	return s.o.Funcs[s.jobs[rc.Job].Kind](rc.ctx, rc)
}

// cronLogger adapts zap to cron.Logger.
type cronLogger struct{ l *zap.Logger }

func (c cronLogger) Info(msg string, kv ...any) { c.l.Debug("cron: "+msg, kvFields(kv)...) }
func (c cronLogger) Error(err error, msg string, kv ...any) {
	c.l.Error("cron: "+msg, append(kvFields(kv), zap.Error(err))...)
}

func kvFields(kv []any) []zap.Field {
	var out []zap.Field
	for i := 0; i+1 < len(kv); i += 2 {
		k, _ := kv[i].(string)
		out = append(out, zap.Any(k, kv[i+1]))
	}
	return out
}
