package scheduler

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// clock is a settable time source shared by the store and the scheduler.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type metricsRec struct {
	mu  sync.Mutex
	obs []string
}

func (m *metricsRec) ObserveRun(job string, status directory.RunStatus, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.obs = append(m.obs, job+"="+string(status))
}

func newSched(t *testing.T, st store.Store, clk *clock, holder string, jobs []Job, funcs map[string]JobFunc, mod ...func(*Options)) *Scheduler {
	t.Helper()
	o := Options{Store: st, Jobs: jobs, Funcs: funcs, Holder: holder, LeaseTTL: 30 * time.Second, Now: clk.Now,
		ShutdownTimeout: time.Minute}
	for _, m := range mod {
		m(&o)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.cancelJob(); s.wg.Wait(); s.cron.Stop() })
	return s
}

func getRun(t *testing.T, st store.Store, id string) directory.Run {
	t.Helper()
	r, err := st.GetRun(context.Background(), id)
	if err != nil {
		t.Fatalf("GetRun(%s): %v", id, err)
	}
	return r
}

func TestLeaderElection(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func() store.Store, clk *clock) {
		ctx := context.Background()
		ran := make(chan string, 4)
		funcs := map[string]JobFunc{"k": func(ctx context.Context, r *RunContext) error { ran <- r.RunID; return nil }}
		jobs := []Job{{Name: "j", Kind: "k", Schedule: "@every 1h"}}
		// Two replicas: two handles on one database.
		st, st2 := open(), open()
		a := newSched(t, st, clk, "a", jobs, funcs)
		b := newSched(t, st2, clk, "b", jobs, funcs)

		mustCampaign := func(s *Scheduler, want bool) {
			t.Helper()
			got, err := s.Campaign(ctx)
			if err != nil || got != want || s.Leader() != want {
				t.Fatalf("%s: Campaign = %v, %v; Leader %v; want %v", s.o.Holder, got, err, s.Leader(), want)
			}
			s.mu.Lock()
			on := s.cronOn
			s.mu.Unlock()
			if on != want {
				t.Fatalf("%s: cron running = %v, want %v", s.o.Holder, on, want)
			}
		}
		mustCampaign(a, true)
		mustCampaign(b, false)
		clk.Add(20 * time.Second)
		mustCampaign(a, true) // renewal extends the lease
		clk.Add(20 * time.Second)
		mustCampaign(b, false) // 40s after the start, but only 20s after the renewal

		// A scheduled tick on the follower does nothing.
		scheduled{s: b, name: "j"}.Run()
		if runs, _ := st.ListRuns(ctx, store.RunQuery{Limit: 10}); len(runs) != 0 {
			t.Fatalf("follower ran the job: %+v", runs)
		}
		// ... while the leader runs it.
		scheduled{s: a, name: "j"}.Run()
		id := <-ran
		if r := getRun(t, st, id); r.Trigger != TriggerSchedule || r.Status != directory.RunOK {
			t.Fatalf("leader run = %+v", r)
		}

		// The leader stops renewing: after the TTL the follower takes over.
		clk.Add(31 * time.Second)
		mustCampaign(b, true)
		mustCampaign(a, false)

		// The leader shutting down releases the lease at once.
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := b.Run(cctx); err != nil {
			t.Fatal(err)
		}
		a2 := newSched(t, st, clk, "a2", jobs, funcs)
		mustCampaign(a2, true)
	})
}

func TestRunRecording(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store, clk *clock) {
		ctx := context.Background()
		storeErr := errors.New("injected store failure")
		funcs := map[string]JobFunc{
			"ok": func(ctx context.Context, r *RunContext) error {
				r.Add("created", 2)
				r.Add("created", 1)
				r.SetCount("updated", 5)
				clk.Add(3 * time.Second)
				return nil
			},
			"fail": func(ctx context.Context, r *RunContext) error {
				r.Add("seen", 1)
				return errors.New("ldapsync: search \"dc=x\": connection reset")
			},
			"held": func(ctx context.Context, r *RunContext) error {
				r.Hold("deletions exceed 10%")
				r.SetPlan("abc123", []byte(`{"removals":42}`))
				return nil
			},
			"panic": func(ctx context.Context, r *RunContext) error { panic("boom") },
			// A store error in the middle of a run fails the run with it.
			"storefail": func(ctx context.Context, r *RunContext) error {
				return st.Update(ctx, r.Meta("test"), func(ctx context.Context, tx store.Tx) error {
					if err := tx.SetCursor(ctx, "test", "1"); err != nil {
						return err
					}
					return storeErr
				})
			},
		}
		var jobs []Job
		for k := range funcs {
			jobs = append(jobs, Job{Name: k + "-job", Kind: k})
		}
		m := &metricsRec{}
		s := newSched(t, st, clk, "a", jobs, funcs, func(o *Options) { o.Metrics = m })
		start := clk.Now()

		cases := []struct {
			job    string
			status directory.RunStatus
			errSub string
			counts map[string]int64
		}{
			{"ok-job", directory.RunOK, "", map[string]int64{"created": 3, "updated": 5}},
			{"fail-job", directory.RunFailed, "connection reset", map[string]int64{"seen": 1}},
			{"held-job", directory.RunHeld, "deletions exceed 10%", nil},
			{"panic-job", directory.RunFailed, "panicked: boom", nil},
			{"storefail-job", directory.RunFailed, "injected store failure", nil},
		}
		for _, c := range cases {
			run, err := s.Execute(ctx, c.job, TriggerManual)
			if err != nil {
				t.Fatalf("%s: %v", c.job, err)
			}
			got := getRun(t, st, run.ID)
			if got.Status != c.status || got.Job != c.job || got.Trigger != TriggerManual {
				t.Errorf("%s: stored %+v", c.job, got)
			}
			if !strings.Contains(got.Error, c.errSub) || (c.errSub == "" && got.Error != "") {
				t.Errorf("%s: error %q, want %q", c.job, got.Error, c.errSub)
			}
			if len(c.counts) > 0 || len(got.Counts) > 0 {
				for k, v := range c.counts {
					if got.Counts[k] != v {
						t.Errorf("%s: counts %v, want %v", c.job, got.Counts, c.counts)
					}
				}
			}
			if got.FinishedAt == nil || got.StartedAt.Before(start) {
				t.Errorf("%s: times %v %v", c.job, got.StartedAt, got.FinishedAt)
			}
		}
		ok, _ := st.ListRuns(ctx, store.RunQuery{Job: "ok-job", Limit: 1})
		if len(ok) != 1 || ok[0].FinishedAt.Sub(ok[0].StartedAt) != 3*time.Second {
			t.Errorf("ok run duration from injected clock: %+v", ok)
		}
		held, _ := st.ListRuns(ctx, store.RunQuery{Job: "held-job", Limit: 1})
		if len(held) != 1 || held[0].PlanHash != "abc123" {
			t.Errorf("held plan not stored: %+v", held)
		}
		if v, err := st.GetCursor(ctx, "test"); err == nil && v != "" {
			t.Errorf("failed transaction committed its cursor: %q", v)
		}
		if len(m.obs) != len(cases) || m.obs[0] != "ok-job=ok" || m.obs[1] != "fail-job=failed" {
			t.Errorf("metrics = %v", m.obs)
		}
		if _, err := s.Execute(ctx, "nope", TriggerManual); !errors.Is(err, ErrUnknownJob) {
			t.Errorf("unknown job: %v", err)
		}
	})
}

func TestManualTrigger(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store, clk *clock) {
		ctx := context.Background()
		started, release := make(chan string), make(chan struct{})
		funcs := map[string]JobFunc{"k": func(ctx context.Context, r *RunContext) error {
			started <- r.RunID
			<-release
			r.Add("done", 1)
			return nil
		}}
		s := newSched(t, st, clk, "a", []Job{{Name: "j", Kind: "k"}}, funcs)
		id, err := s.Trigger(WithRequester(ctx, "admin:ops", "req-42"), "j")
		if err != nil {
			t.Fatal(err)
		}
		var events []audit.Event
		_ = st.Audit(ctx, store.AuditFilter{ObjectID: id}, func(e audit.Event) error { events = append(events, e); return nil })
		var trig *audit.Event
		for i, e := range events {
			if e.Actor != "admin:ops" || e.RunID != id || e.RequestID != "req-42" {
				t.Errorf("the trigger's events are the requester's: %+v", e)
			}
			if e.Action == "run.trigger" {
				trig = &events[i]
			}
		}
		byActor := 0
		_ = st.Audit(ctx, store.AuditFilter{Actor: "admin:ops"}, func(e audit.Event) error {
			if e.Action == "run.trigger" && e.ObjectID == id {
				byActor++
			}
			return nil
		})
		if byActor != 1 {
			t.Fatalf("the audit log filtered by the requester shows %d run.trigger events, want 1", byActor)
		}
		if trig == nil || !strings.Contains(string(trig.After), `"by":"admin:ops"`) {
			t.Fatalf("no run.trigger event naming the requester: %+v", events)
		}
		if got := <-started; got != id {
			t.Fatalf("run id %s, job saw %s", id, got)
		}
		if r := getRun(t, st, id); r.Status != directory.RunRunning || r.Trigger != TriggerManual || r.FinishedAt != nil {
			t.Fatalf("in flight: %+v", r)
		}
		if _, err := s.Trigger(ctx, "j"); !errors.Is(err, ErrBusy) {
			t.Fatalf("second trigger while running: %v", err)
		}
		close(release)
		s.wg.Wait()
		if r := getRun(t, st, id); r.Status != directory.RunOK || r.Counts["done"] != 1 {
			t.Fatalf("finished: %+v", r)
		}
		if _, err := s.Trigger(ctx, "missing"); !errors.Is(err, ErrUnknownJob) {
			t.Fatalf("unknown: %v", err)
		}
	})
}

func TestSkipIfStillRunning(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store, clk *clock) {
		ctx := context.Background()
		started, release := make(chan struct{}), make(chan struct{})
		calls := 0
		funcs := map[string]JobFunc{"k": func(ctx context.Context, r *RunContext) error {
			calls++
			close(started)
			<-release
			return nil
		}}
		s := newSched(t, st, clk, "a", []Job{{Name: "j", Kind: "k", Schedule: "*/5 * * * *"}}, funcs)
		if ok, err := s.Campaign(ctx); !ok || err != nil {
			t.Fatalf("campaign: %v %v", ok, err)
		}
		entries := s.cron.Entries()
		if len(entries) != 1 {
			t.Fatalf("%d cron entries", len(entries))
		}
		// The next fire time is computed in UTC.
		if loc := entries[0].Schedule.Next(clk.Now()).Location(); loc != time.UTC {
			t.Fatalf("schedule location %v", loc)
		}
		first := make(chan struct{})
		go func() { entries[0].WrappedJob.Run(); close(first) }()
		<-started
		entries[0].WrappedJob.Run() // a tick while the first run is going: skipped, returns at once
		close(release)
		<-first
		s.wg.Wait()
		runs, err := st.ListRuns(ctx, store.RunQuery{Job: "j", Limit: 10})
		if err != nil || len(runs) != 1 || calls != 1 {
			t.Fatalf("runs %d (%v), calls %d; want 1", len(runs), err, calls)
		}
	})
}

// shutdownClock makes Run's waits controllable: renewal ticks never come,
// the shutdown deadline fires when the test says.
func shutdownAfter(armed chan<- struct{}, deadline <-chan time.Time, shutdown time.Duration) func(time.Duration) <-chan time.Time {
	return func(d time.Duration) <-chan time.Time {
		switch d {
		case shutdown:
			armed <- struct{}{}
			return deadline
		case AbortGrace:
			c := make(chan time.Time)
			close(c) // the grace period is over at once
			return c
		}
		return nil
	}
}

func TestShutdown(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store, clk *clock) {
		for _, finishInTime := range []bool{true, false} {
			name := map[bool]string{true: "finishes", false: "aborted"}[finishInTime]
			t.Run(name, func(t *testing.T) {
				started, release := make(chan struct{}), make(chan struct{})
				funcs := map[string]JobFunc{"k": func(ctx context.Context, r *RunContext) error {
					close(started)
					select {
					case <-release:
						return nil
					case <-ctx.Done():
						return ctx.Err()
					}
				}}
				armed, deadline := make(chan struct{}, 1), make(chan time.Time)
				s := newSched(t, st, clk, "h-"+name, []Job{{Name: "j-" + name, Kind: "k"}}, funcs, func(o *Options) {
					o.After = shutdownAfter(armed, deadline, o.ShutdownTimeout)
				})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error)
				go func() { done <- s.Run(ctx) }()
				id, err := s.Trigger(context.Background(), "j-"+name)
				if err != nil {
					t.Fatal(err)
				}
				<-started
				cancel()
				<-armed // shutdown is waiting for the run
				if _, err := s.Trigger(context.Background(), "j-"+name); !errors.Is(err, ErrStopped) {
					t.Fatalf("trigger during shutdown: %v", err)
				}
				if finishInTime {
					close(release)
				} else {
					close(deadline)
				}
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				r := getRun(t, st, id)
				want := directory.RunOK
				if !finishInTime {
					want = directory.RunAborted
				}
				if r.Status != want || r.FinishedAt == nil {
					t.Fatalf("run = %+v, want %s", r, want)
				}
				if !finishInTime && !strings.Contains(r.Error, "aborted") {
					t.Fatalf("aborted run error %q", r.Error)
				}
			})
		}
	})
}

func TestExecuteCancelledByCaller(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store, clk *clock) {
		ctx, cancel := context.WithCancel(context.Background())
		funcs := map[string]JobFunc{"k": func(jctx context.Context, r *RunContext) error {
			cancel()
			<-jctx.Done()
			return jctx.Err()
		}}
		s := newSched(t, st, clk, "a", []Job{{Name: "j", Kind: "k"}}, funcs)
		run, err := s.Execute(ctx, "j", TriggerManual)
		if err != nil {
			t.Fatal(err)
		}
		if r := getRun(t, st, run.ID); r.Status != directory.RunAborted {
			t.Fatalf("run = %+v", r)
		}
	})
}

func TestNewRejects(t *testing.T) {
	funcs := map[string]JobFunc{"k": func(context.Context, *RunContext) error { return nil }}
	cases := map[string][]Job{
		"unimplemented kind": {{Name: "a", Kind: "other"}},
		"bad schedule":       {{Name: "a", Kind: "k", Schedule: "every day"}},
		"duplicate":          {{Name: "a", Kind: "k"}, {Name: "a", Kind: "k"}},
	}
	for name, jobs := range cases {
		if _, err := New(Options{Store: nopStore{}, Jobs: jobs, Funcs: funcs}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(Options{Jobs: nil}); err == nil {
		t.Error("no store accepted")
	}
}

// nopStore satisfies Store for constructor checks that never touch it.
type nopStore struct{ Store }

func TestShutdownAbandonsRunIgnoringCancellation(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store, clk *clock) {
		started, stuck := make(chan struct{}), make(chan struct{})
		funcs := map[string]JobFunc{"k": func(ctx context.Context, r *RunContext) error {
			close(started)
			<-stuck // ignores ctx
			return nil
		}}
		armed, deadline := make(chan struct{}, 1), make(chan time.Time)
		m := &metricsRec{}
		s := newSched(t, st, clk, "h", []Job{{Name: "j", Kind: "k"}}, funcs, func(o *Options) {
			o.After = shutdownAfter(armed, deadline, o.ShutdownTimeout)
			o.Metrics = m
		})
		t.Cleanup(func() { close(stuck) }) // runs before newSched's cleanup waits for the job
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- s.Run(ctx) }()
		id, err := s.Trigger(context.Background(), "j")
		if err != nil {
			t.Fatal(err)
		}
		<-started
		cancel()
		<-armed
		close(deadline)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if r := getRun(t, st, id); r.Status != directory.RunAborted || !strings.Contains(r.Error, "ignored cancellation") {
			t.Fatalf("run = %+v", r)
		}
		if len(m.obs) != 1 || m.obs[0] != "j=aborted" {
			t.Fatalf("metrics %v", m.obs)
		}
	})
}

// TestJobSafetyAbort: a job that returns Aborted(err) is recorded
// "aborted" with err's message, not "failed".
func TestJobSafetyAbort(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store, clk *clock) {
		ctx := context.Background()
		funcs := map[string]JobFunc{
			"abort": func(ctx context.Context, r *RunContext) error {
				return Aborted(errors.New("snapshot suspiciously small: 2 of 100 firms"))
			},
			"fail": func(ctx context.Context, r *RunContext) error { return errors.New("boom") },
		}
		s := newSched(t, st, clk, "a", []Job{{Name: "a", Kind: "abort"}, {Name: "f", Kind: "fail"}}, funcs)
		for job, want := range map[string]directory.RunStatus{"a": directory.RunAborted, "f": directory.RunFailed} {
			run, err := s.Execute(ctx, job, TriggerManual)
			if err != nil {
				t.Fatalf("%s: %v", job, err)
			}
			if run.Status != want {
				t.Errorf("%s: status %q, want %q (error %q)", job, run.Status, want, run.Error)
			}
			stored, gerr := st.GetRun(ctx, run.ID)
			if gerr != nil || stored.Status != want {
				t.Errorf("%s: stored %q %v, want %q", job, stored.Status, gerr, want)
			}
		}
	})
}

// TestLostLeadershipAbortsScheduledRuns: a leader that finds another
// replica holding the lease (its own lapsed, e.g. after a stall) stops its
// scheduled runs in flight, recorded aborted: the new leader fires the same
// jobs, and two runs of one job must not go on side by side. A manual run
// is the requester's and goes on.
func TestLostLeadershipAbortsScheduledRuns(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func() store.Store, clk *clock) {
		ctx := context.Background()
		started := make(chan string, 2)
		funcs := map[string]JobFunc{"k": func(ctx context.Context, r *RunContext) error {
			started <- r.Trigger
			<-ctx.Done()
			return ctx.Err()
		}}
		jobs := []Job{{Name: "j", Kind: "k", Schedule: "@every 1h"}, {Name: "m", Kind: "k"}}
		st, st2 := open(), open()
		a := newSched(t, st, clk, "a", jobs, funcs)
		b := newSched(t, st2, clk, "b", jobs, funcs)
		if ok, err := a.Campaign(ctx); !ok || err != nil {
			t.Fatalf("a: campaign %v %v", ok, err)
		}
		done := make(chan struct{})
		go func() { scheduled{s: a, name: "j"}.Run(); close(done) }()
		<-started
		manual, err := a.Trigger(ctx, "m")
		if err != nil {
			t.Fatal(err)
		}
		<-started
		clk.Add(31 * time.Second) // a stalled past its lease
		if ok, err := b.Campaign(ctx); !ok || err != nil {
			t.Fatalf("b: campaign %v %v", ok, err)
		}
		if ok, err := a.Campaign(ctx); ok || err != nil {
			t.Fatalf("a: campaign %v %v; want the lease lost to b", ok, err)
		}
		select {
		case <-done:
		case <-time.After(30 * time.Second): // a hang guard, not synchronisation
			t.Fatal("the scheduled run went on after its replica lost the lease")
		}
		runs, err := st.ListRuns(ctx, store.RunQuery{Job: "j", Limit: 10})
		if err != nil || len(runs) != 1 || runs[0].Status != directory.RunAborted || !strings.Contains(runs[0].Error, "lease") {
			t.Fatalf("runs %+v %v; want one aborted run saying the lease was lost", runs, err)
		}
		if r := getRun(t, st, manual); r.Status != directory.RunRunning {
			t.Errorf("manual run %+v; want it still running", r)
		}
	})
}

// TestJobRunsOnceAcrossReplicas: a manual trigger on a second replica (or
// the CLI) while the job runs on the first is refused with ErrBusy; once
// the run ends its lease is released and the job runs anywhere again. A
// lease that lapses and is taken elsewhere aborts the run that lost it.
func TestJobRunsOnceAcrossReplicas(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func() store.Store, clk *clock) {
		ctx := context.Background()
		started, release := make(chan string, 1), make(chan struct{})
		funcs := map[string]JobFunc{"k": func(ctx context.Context, r *RunContext) error {
			started <- r.RunID
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}}
		jobs := []Job{{Name: "j", Kind: "k"}}
		renew := make(chan time.Time)
		a := newSched(t, open(), clk, "a", jobs, funcs, func(o *Options) {
			o.After = func(d time.Duration) <-chan time.Time {
				if d == o.LeaseTTL/3 {
					return renew
				}
				return nil
			}
		})
		stB := open()
		b := newSched(t, stB, clk, "b", jobs, funcs)
		idA, err := a.Trigger(ctx, "j")
		if err != nil {
			t.Fatal(err)
		}
		<-started
		if _, err := b.Trigger(ctx, "j"); !errors.Is(err, ErrBusy) {
			t.Fatalf("trigger on replica b while a runs the job: %v", err)
		}
		if _, err := b.Execute(ctx, "j", TriggerManual); !errors.Is(err, ErrBusy) {
			t.Fatalf("execute on replica b while a runs the job: %v", err)
		}
		close(release)
		a.wg.Wait()
		if r := getRun(t, stB, idA); r.Status != directory.RunOK {
			t.Fatalf("a's run: %+v", r)
		}
		// Released at the end: b may run it now.
		release = make(chan struct{})
		close(release)
		if r, err := b.Execute(ctx, "j", TriggerManual); err != nil || r.Status != directory.RunOK {
			t.Fatalf("b after a finished: %+v %v", r, err)
		}
		<-started

		// a runs again; its lease lapses (no renewal for a whole TTL) and b
		// takes it: a's next renewal aborts a's run.
		release = make(chan struct{})
		idA, err = a.Trigger(ctx, "j")
		if err != nil {
			t.Fatal(err)
		}
		<-started
		clk.Add(a.o.LeaseTTL + time.Second)
		if ok, err := stB.AcquireLease(ctx, jobLease("j"), "b", b.o.LeaseTTL); err != nil || !ok {
			t.Fatalf("b takes the lapsed lease: %v %v", ok, err)
		}
		select {
		case renew <- clk.Now():
		case <-time.After(10 * time.Second):
			t.Fatal("a's run never renewed its job lease")
		}
		a.wg.Wait()
		if r := getRun(t, stB, idA); r.Status != directory.RunAborted || !strings.Contains(r.Error, "lease") {
			t.Fatalf("a's run after losing its lease: %+v", r)
		}
	})
}
