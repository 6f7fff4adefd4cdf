package reconcile

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
	afters  chan time.Duration
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), afters: make(chan time.Duration, 1000)}
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.waiters = append(c.waiters, waiter{at: c.now.Add(d), ch: ch})
	c.afters <- d
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	var keep []waiter
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			keep = append(keep, w)
		}
	}
	c.waiters = keep
}

// waitAfter waits until the worker arms a timer of d.
func (c *fakeClock) waitAfter(t *testing.T, d time.Duration) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case got := <-c.afters:
			if got == d {
				return
			}
		case <-timeout:
			t.Fatalf("worker never waited %v", d)
		}
	}
}

type call struct {
	ids  []string
	resp chan error
}

// scripted is a UserReconciler whose every call the test answers, and which
// fails the test if one user is in two calls at once.
type scripted struct {
	t        *testing.T
	calls    chan call
	mu       sync.Mutex
	inflight map[string]bool
}

func newScripted(t *testing.T) *scripted {
	return &scripted{t: t, calls: make(chan call), inflight: map[string]bool{}}
}

func (s *scripted) Users(ctx context.Context, ids []string, o RunOptions) (*Report, error) {
	s.mu.Lock()
	for _, id := range ids {
		if s.inflight[id] {
			s.t.Errorf("user %s reconciled concurrently", id)
		}
		s.inflight[id] = true
	}
	s.mu.Unlock()
	c := call{ids: slices.Clone(ids), resp: make(chan error)}
	s.calls <- c
	err := <-c.resp
	s.mu.Lock()
	for _, id := range ids {
		delete(s.inflight, id)
	}
	s.mu.Unlock()
	return &Report{}, err
}

func (s *scripted) next(t *testing.T) call {
	t.Helper()
	select {
	case c := <-s.calls:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no reconcile call")
	}
	return call{}
}

func startWorker(t *testing.T, r UserReconciler, o WorkerOptions) *Worker {
	w := NewWorker(r, o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

func TestWorkerDeduplicates(t *testing.T) {
	s := newScripted(t)
	w := NewWorker(s, WorkerOptions{Clock: newFakeClock()})
	w.Enqueue(context.Background(), "b", "a", "a", "b", "a")
	if q, _ := w.Pending(); q != 2 {
		t.Fatalf("queued %d, want 2", q)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	c := s.next(t)
	if !slices.Equal(c.ids, []string{"a", "b"}) {
		t.Fatalf("batch %v, want [a b]", c.ids)
	}
	c.resp <- nil
}

func TestWorkerNeverReconcilesAUserConcurrently(t *testing.T) {
	s := newScripted(t)
	w := startWorker(t, s, WorkerOptions{Concurrency: 4, Clock: newFakeClock()})
	w.Enqueue(context.Background(), "a")
	first := s.next(t)
	// a change arrives while a is in flight: queued for one more pass, not run now
	w.Enqueue(context.Background(), "a", "a", "b")
	second := s.next(t)
	if !slices.Equal(second.ids, []string{"b"}) {
		t.Fatalf("while a is in flight got batch %v, want [b]", second.ids)
	}
	second.resp <- nil
	first.resp <- nil
	third := s.next(t)
	if !slices.Equal(third.ids, []string{"a"}) {
		t.Fatalf("after a finished got %v, want one more pass of a", third.ids)
	}
	third.resp <- nil
}

func TestWorkerRetriesWithBackoffThenQuarantines(t *testing.T) {
	s := newScripted(t)
	clock := newFakeClock()
	quarantined := make(chan string, 1)
	w := startWorker(t, s, WorkerOptions{Clock: clock, MaxFailures: 3, BaseBackoff: time.Second,
		OnQuarantine: func(id string, err error) { quarantined <- id }})
	w.Enqueue(context.Background(), "x")
	boom := errors.New("store unavailable")
	s.next(t).resp <- boom
	clock.waitAfter(t, time.Second)
	clock.Advance(time.Second)
	s.next(t).resp <- boom
	clock.waitAfter(t, 2*time.Second)
	clock.Advance(2 * time.Second)
	s.next(t).resp <- boom
	// third failure: quarantined, not retried
	select {
	case id := <-quarantined:
		if id != "x" {
			t.Fatalf("quarantined %s", id)
		}
	case c := <-s.calls:
		t.Fatalf("quarantined user retried: %v", c.ids)
	case <-time.After(10 * time.Second):
		t.Fatal("not quarantined")
	}
	if got := w.Quarantined()["x"]; got != boom.Error() {
		t.Fatalf("quarantine reason %q", got)
	}
	w.Enqueue(context.Background(), "x")
	if q, _ := w.Pending(); q != 0 {
		t.Fatal("quarantined user queued again")
	}
	w.Release(context.Background(), "x")
	s.next(t).resp <- nil
}

func TestWorkerIsolatesAFailingUserInABatch(t *testing.T) {
	s := newScripted(t)
	clock := newFakeClock()
	w := startWorker(t, s, WorkerOptions{Clock: clock, Concurrency: 1})
	w.Enqueue(context.Background(), "good", "bad")
	s.next(t).resp <- errors.New("bad user")
	for _, want := range []string{"bad", "good"} {
		c := s.next(t)
		if !slices.Equal(c.ids, []string{want}) {
			t.Fatalf("got %v, want %s alone", c.ids, want)
		}
		if want == "bad" {
			c.resp <- errors.New("bad user")
		} else {
			c.resp <- nil
		}
	}
	clock.waitAfter(t, time.Second)
	clock.Advance(time.Second)
	c := s.next(t)
	if !slices.Equal(c.ids, []string{"bad"}) {
		t.Fatalf("retry %v, want [bad]", c.ids)
	}
	c.resp <- nil
}
