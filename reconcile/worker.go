package reconcile

import (
	"context"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Clock is the worker's time source; tests inject a fake one.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// UserReconciler reconciles a set of users; *Reconciler is one.
type UserReconciler interface {
	Users(ctx context.Context, ids []string, o RunOptions) (*Report, error)
}

var _ UserReconciler = (*Reconciler)(nil)

// WorkerOptions configure a Worker.
type WorkerOptions struct {
	Concurrency int           // batches reconciled at once (default 2)
	BatchSize   int           // users per batch (default 100)
	MaxFailures int           // failures in a row before quarantine (default 5)
	BaseBackoff time.Duration // first retry delay, doubled per failure (default 1s)
	MaxBackoff  time.Duration // default 5m
	Clock       Clock
	Logger      *zap.Logger
	// OnQuarantine, when set, is called (outside the queue lock) for each
	// user quarantined: metrics and run reports hook in here.
	OnQuarantine func(userID string, err error)
	// OnBatch, when set, is called after each reconcile attempt of a batch
	// (or of one user retried alone) with its outcome: metrics hook in here.
	OnBatch func(userIDs []string, err error)
}

// Worker reconciles users as their facts change. The queue is de-duplicated
// (a user queued twice is reconciled once), a user is never reconciled by two
// batches at once (a change arriving meanwhile queues one more pass after),
// failures are retried with exponential backoff, and a user failing
// MaxFailures times in a row is quarantined until Release.
type Worker struct {
	r   UserReconciler
	o   WorkerOptions
	log *zap.Logger

	mu          sync.Mutex
	pending     map[string]*entry
	inflight    map[string]bool
	dirty       map[string]bool
	failures    map[string]int
	quarantined map[string]string
	wake        chan struct{}
}

type entry struct {
	id        string
	notBefore time.Time
}

// NewWorker returns a worker over r.
func NewWorker(r UserReconciler, o WorkerOptions) *Worker {
	if o.Concurrency <= 0 {
		o.Concurrency = 2
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 100
	}
	if o.MaxFailures <= 0 {
		o.MaxFailures = 5
	}
	if o.BaseBackoff <= 0 {
		o.BaseBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Minute
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return &Worker{r: r, o: o, log: o.Logger.Named("reconcile"),
		pending: map[string]*entry{}, inflight: map[string]bool{}, dirty: map[string]bool{},
		failures: map[string]int{}, quarantined: map[string]string{}, wake: make(chan struct{}, 1)}
}

// Enqueue asks for the users to be reconciled soon. It never blocks on the
// reconcile itself; quarantined users are ignored until released.
func (w *Worker) Enqueue(ctx context.Context, userIDs ...string) {
	w.mu.Lock()
	now := w.o.Clock.Now()
	for _, id := range userIDs {
		if id == "" {
			continue
		}
		if _, q := w.quarantined[id]; q {
			continue
		}
		if w.inflight[id] {
			w.dirty[id] = true
			continue
		}
		if e, ok := w.pending[id]; ok {
			if w.failures[id] == 0 && e.notBefore.After(now) {
				e.notBefore = now
			}
			continue
		}
		w.pending[id] = &entry{id: id, notBefore: now}
	}
	w.mu.Unlock()
	w.signal()
}

// Release takes a user out of quarantine and queues it.
func (w *Worker) Release(ctx context.Context, userID string) {
	w.mu.Lock()
	delete(w.quarantined, userID)
	delete(w.failures, userID)
	w.mu.Unlock()
	w.Enqueue(ctx, userID)
}

// Quarantined returns the quarantined users and their last error.
func (w *Worker) Quarantined() map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]string, len(w.quarantined))
	for k, v := range w.quarantined {
		out[k] = v
	}
	return out
}

// Pending returns how many users wait (including retries) and are in flight.
func (w *Worker) Pending() (queued, inflight int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending), len(w.inflight)
}

func (w *Worker) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// next takes up to BatchSize due users out of the queue and marks them in
// flight; otherwise it says how long until the next one is due (0 = none).
func (w *Worker) next() ([]string, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.o.Clock.Now()
	var due []*entry
	var wait time.Duration
	for _, e := range w.pending {
		if !e.notBefore.After(now) {
			due = append(due, e)
		} else if d := e.notBefore.Sub(now); wait == 0 || d < wait {
			wait = d
		}
	}
	sort.Slice(due, func(i, j int) bool {
		if !due[i].notBefore.Equal(due[j].notBefore) {
			return due[i].notBefore.Before(due[j].notBefore)
		}
		return due[i].id < due[j].id
	})
	if len(due) > w.o.BatchSize {
		due = due[:w.o.BatchSize]
	}
	ids := make([]string, len(due))
	for i, e := range due {
		ids[i] = e.id
		delete(w.pending, e.id)
		w.inflight[e.id] = true
	}
	return ids, wait
}

// Run processes the queue until ctx ends, then waits for batches in flight.
func (w *Worker) Run(ctx context.Context) error {
	sem := make(chan struct{}, w.o.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		// A wake-up sent before next reads the queue is answered by this
		// read: drop it, so that it does not start a second pass that arms
		// its timer from a clock read before the timer before it fired.
		select {
		case <-w.wake:
		default:
		}
		ids, wait := w.next()
		if len(ids) == 0 {
			<-sem
			var timer <-chan time.Time
			if wait > 0 {
				timer = w.o.Clock.After(wait)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-w.wake:
			case <-timer:
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { w.signal(); <-sem }() // signal first: the loop waiting for the slot drops it
			w.process(context.WithoutCancel(ctx), ids)
		}()
	}
}

// process reconciles a batch; when the batch fails, each user is retried on
// its own so one bad user does not hold back the others.
func (w *Worker) process(ctx context.Context, ids []string) {
	_, err := w.r.Users(ctx, ids, RunOptions{Trigger: "event"})
	if err == nil {
		w.done(ids, nil)
		return
	}
	if len(ids) == 1 {
		w.done(ids, err)
		return
	}
	for _, id := range ids {
		_, err := w.r.Users(ctx, []string{id}, RunOptions{Trigger: "event"})
		w.done([]string{id}, err)
	}
}

func (w *Worker) done(ids []string, err error) {
	var quarantined []string
	defer func() {
		if w.o.OnBatch != nil {
			w.o.OnBatch(ids, err)
		}
		if w.o.OnQuarantine != nil {
			for _, id := range quarantined {
				w.o.OnQuarantine(id, err)
			}
		}
	}()
	w.mu.Lock()
	now := w.o.Clock.Now()
	for _, id := range ids {
		delete(w.inflight, id)
		dirty := w.dirty[id]
		delete(w.dirty, id)
		if err == nil {
			delete(w.failures, id)
			if dirty {
				w.pending[id] = &entry{id: id, notBefore: now}
			}
			continue
		}
		w.failures[id]++
		n := w.failures[id]
		if n >= w.o.MaxFailures {
			w.quarantined[id] = err.Error()
			quarantined = append(quarantined, id)
			w.log.Error("user quarantined", zap.String("user_id", id), zap.Int("failures", n), zap.Error(err))
			continue
		}
		w.pending[id] = &entry{id: id, notBefore: now.Add(w.backoff(n))}
		w.log.Warn("reconcile failed, retrying", zap.String("user_id", id), zap.Int("failures", n), zap.Error(err))
	}
	w.mu.Unlock()
}

func (w *Worker) backoff(n int) time.Duration {
	d := w.o.BaseBackoff
	for i := 1; i < n && d < w.o.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, w.o.MaxBackoff)
}
