package reconcile

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/store"
)

// headStore fails LastAuditSeq a number of times, then answers; Audit
// returns no events (other methods are never reached without events).
type headStore struct {
	FeedStore
	mu    sync.Mutex
	fails int
	calls int
}

func (h *headStore) LastAuditSeq(ctx context.Context) (int64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls++
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if h.fails > 0 {
		h.fails--
		return 0, errors.New("connection refused")
	}
	return 7, nil
}

func (h *headStore) Audit(ctx context.Context, _ store.AuditFilter, _ func(audit.Event) error) error {
	return ctx.Err()
}

// tickClock fires every After at once, counting them.
type tickClock struct {
	mu    sync.Mutex
	ticks int
}

func (c *tickClock) Now() time.Time { return time.Unix(0, 0) }
func (c *tickClock) After(time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.ticks++
	c.mu.Unlock()
	ch := make(chan time.Time, 1)
	ch <- time.Unix(0, 0)
	return ch
}

// TestFeedRunStart: a shutdown during start is a clean stop (the daemon
// exited 1 when it stopped right after starting), and a store that fails at
// start is retried instead of ending the daemon.
func TestFeedRunStart(t *testing.T) {
	t.Run("cancelled during start", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		f := NewFeed(&headStore{}, &recordingQueue{}, FeedOptions{Clock: &tickClock{}})
		if err := f.Run(ctx); err != nil {
			t.Fatalf("Run after cancel = %v, want nil", err)
		}
	})
	t.Run("start retried until the store answers", func(t *testing.T) {
		hs := &headStore{fails: 3}
		clk := &tickClock{}
		f := NewFeed(hs, &recordingQueue{}, FeedOptions{Clock: clk})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- f.Run(ctx) }()
		deadline := time.After(10 * time.Second)
		for {
			hs.mu.Lock()
			started := hs.calls >= 4
			hs.mu.Unlock()
			if started {
				break
			}
			select {
			case err := <-done:
				t.Fatalf("Run returned %v before the store answered", err)
			case <-deadline:
				t.Fatal("feed never retried its start")
			case <-time.After(time.Millisecond):
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
		if f.after != 7 {
			t.Fatalf("feed positioned at %d, want the head 7", f.after)
		}
	})
}
