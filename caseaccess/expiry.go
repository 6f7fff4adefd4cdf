package caseaccess

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/dirsyncd/dirsyncd/audit"
)

// Clock is the time source of the Expirer (injected in tests).
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// Timer is a stoppable one-shot timer.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// NewTimer returns a real timer.
func (SystemClock) NewTimer(d time.Duration) Timer { return sysTimer{time.NewTimer(d)} }

type sysTimer struct{ t *time.Timer }

func (t sysTimer) C() <-chan time.Time { return t.t.C }
func (t sysTimer) Stop() bool          { return t.t.Stop() }

// ActorExpiry is the audit actor of expiries.
const ActorExpiry = "caseaccess-expiry"

// LeaseName is the store lease that elects the replica running expiries.
const LeaseName = "caseaccess-expiry"

// ExpirerOptions configure an Expirer.
type ExpirerOptions struct {
	Service *Service
	Store   Store
	Clock   Clock  // defaults to SystemClock
	Holder  string // this replica's lease holder id (required)
	// LeaseTTL is the lease's lifetime (default 45s); the leader renews it
	// every MaxWait, which must be shorter.
	LeaseTTL time.Duration
	// MaxWait bounds how long the timer sleeps without re-reading the next
	// expiry (default 15s): it picks up changes made on other replicas
	// and renews the lease. Keep it under 60s.
	MaxWait time.Duration
	Batch   int // invites revoked per transaction (default 1000)
	Log     *zap.Logger
	// OnSweep, when set, is called after every pass (tests, metrics).
	OnSweep func(SweepResult)
}

// SweepResult reports one pass of the Expirer.
type SweepResult struct {
	Leader  bool
	Expired int
	Next    time.Time // zero when no invite expires
	Wait    time.Duration
	Err     error
}

// Expirer revokes invites when they expire. Run it on every replica: only
// the lease holder works.
type Expirer struct {
	o    ExpirerOptions
	kick chan struct{}
	log  *zap.Logger
}

// NewExpirer returns an Expirer.
func NewExpirer(o ExpirerOptions) (*Expirer, error) {
	if o.Service == nil || o.Store == nil || o.Holder == "" {
		return nil, fmt.Errorf("caseaccess: expirer needs a service, a store and a holder id")
	}
	if o.Clock == nil {
		o.Clock = SystemClock{}
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 45 * time.Second
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 15 * time.Second
	}
	if o.MaxWait >= o.LeaseTTL {
		return nil, fmt.Errorf("caseaccess: expirer maxWait %s must be shorter than leaseTTL %s", o.MaxWait, o.LeaseTTL)
	}
	if o.Batch <= 0 {
		o.Batch = 1000
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	return &Expirer{o: o, kick: make(chan struct{}, 1), log: o.Log.Named("caseaccess").With(zap.String("component", "expiry"))}, nil
}

// Kick makes the Expirer re-read the next expiry now (call after every
// change to invites; it never blocks).
func (e *Expirer) Kick() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// Run loops until ctx ends: when it holds the lease it applies every due
// expiry (at start this catches up on expiries missed while no replica
// ran), then sleeps until the next expiry, a Kick, or MaxWait.
func (e *Expirer) Run(ctx context.Context) error {
	defer func() {
		_ = e.o.Store.ReleaseLease(context.WithoutCancel(ctx), LeaseName, e.o.Holder)
	}()
	for {
		res := e.pass(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if e.o.OnSweep != nil {
			e.o.OnSweep(res)
		}
		t := e.o.Clock.NewTimer(res.Wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		case <-e.kick:
			t.Stop()
		}
	}
}

// pass is one iteration: lease, sweep, next deadline.
func (e *Expirer) pass(ctx context.Context) SweepResult {
	res := SweepResult{Wait: e.o.MaxWait}
	leader, err := e.o.Store.AcquireLease(ctx, LeaseName, e.o.Holder, e.o.LeaseTTL)
	if err != nil {
		res.Err = err
		if ctx.Err() == nil { // not a shutdown
			e.log.Warn("acquire lease failed; retrying", zap.Error(err))
		}
		return res
	}
	if !leader {
		return res
	}
	res.Leader = true
	n, err := e.o.Service.ExpireDue(ctx, audit.Meta{Actor: ActorExpiry}, e.o.Batch)
	res.Expired = n
	if n > 0 {
		e.log.Info("invites expired", zap.Int("count", n))
	}
	if err != nil {
		res.Err = err
		e.log.Error("expire invites failed; retrying", zap.Error(err), zap.Int("expired", n))
		return res
	}
	next, ok, err := e.o.Store.NextExpiry(ctx)
	if err != nil {
		res.Err = err
		e.log.Warn("read next expiry failed; retrying", zap.Error(err))
		return res
	}
	if ok {
		res.Next = next
		if d := next.Sub(e.o.Clock.Now()); d < res.Wait {
			res.Wait = max(d, 0)
		}
	}
	return res
}
