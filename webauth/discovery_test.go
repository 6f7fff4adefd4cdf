package webauth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/config"
)

// A failed discovery is the answer for retryDelay: callers queued behind
// an identity provider that is down (each attempt can take the client's
// whole timeout, under the provider's lock) fail at once instead of each
// trying again in turn; after the delay the next call tries again.
func TestFailedDiscoveryIsNotRetriedByEveryCaller(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	p := New(config.OIDCConfig{Issuer: srv.URL, ClientID: "x", UserClaim: "email"}, "", nil)
	p.now = func() time.Time { return now }
	ctx := context.Background()
	for i := range 3 {
		if _, err := p.VerifyToken(ctx, "a.b.c"); err == nil || errors.Is(err, ErrInvalid) {
			t.Fatalf("call %d: err = %v, want the provider's failure", i, err)
		}
		if _, err := p.AuthCodeURL(ctx, "s", "n", "v"); err == nil {
			t.Fatalf("call %d: AuthCodeURL with the provider down", i)
		}
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("discovery tried %d times within the retry delay, want 1", n)
	}
	now = now.Add(retryDelay)
	_, _ = p.VerifyToken(ctx, "a.b.c")
	if n := hits.Load(); n != 2 {
		t.Fatalf("discovery tried %d times after the retry delay, want 2", n)
	}
}

// A caller who gives up (its context ends) is no failure of the provider:
// the next caller tries at once.
func TestCancelledDiscoveryIsNotRemembered(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	p := New(config.OIDCConfig{Issuer: srv.URL, ClientID: "x", UserClaim: "email"}, "", nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.VerifyToken(ctx, "a.b.c"); err == nil {
		t.Fatal("a cancelled discovery succeeded")
	}
	_, _ = p.VerifyToken(context.Background(), "a.b.c")
	if n := hits.Load(); n != 1 {
		t.Fatalf("discovery reached the provider %d times, want 1 (the cancelled call never did)", n)
	}
}
