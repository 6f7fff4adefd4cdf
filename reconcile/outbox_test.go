package reconcile

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/store"
)

// ccmsEndpoint stands in for CCMS (which cannot run here): it records every
// request and answers with the status the test sets.
type ccmsEndpoint struct {
	mu     sync.Mutex
	status int
	got    []ccmsRequest
}

type ccmsRequest struct {
	key, auth string
	msg       CCMSMessage
}

func (c *ccmsEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var m CCMSMessage
	_ = json.Unmarshal(b, &m)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, ccmsRequest{key: r.Header.Get("Idempotency-Key"), auth: r.Header.Get("Authorization"), msg: m})
	w.WriteHeader(c.status)
}

func (c *ccmsEndpoint) requests() []ccmsRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

func TestCCMSOutbox(t *testing.T) {
	forEachStore(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		sd := newSeed(t, s)
		alice := sd.user(t, "alice@smith.example", "3856", "0Q731M", "LAA CCMS Case Workers", "LAA Crime")
		r := New(s, launchEngine(t), Options{Outbox: true})
		if _, err := r.Full(ctx, RunOptions{}); err != nil {
			t.Fatal(err)
		}
		var enq int
		_ = s.Audit(ctx, store.AuditFilter{Action: actionCCMSEnqueue}, func(audit.Event) error { enq++; return nil })
		if enq != 1 {
			t.Fatalf("%d messages enqueued with the grants, want 1 (crime roles carry no CCMS code)", enq)
		}

		ep := &ccmsEndpoint{status: http.StatusOK}
		srv := httptest.NewServer(ep)
		t.Cleanup(srv.Close)
		var delays []time.Duration
		now := func(d time.Duration) <-chan time.Time {
			delays = append(delays, d)
			c := make(chan time.Time, 1)
			c <- time.Time{}
			return c
		}
		ob := NewOutbox(s, r.engine.Catalogue(), OutboxOptions{Endpoint: srv.URL, Token: "tok", MaxAttempts: 3, Backoff: time.Second, After: now})
		sent, failed, err := ob.Deliver(ctx)
		if err != nil || sent != 1 || failed != 0 {
			t.Fatalf("deliver: %d sent, %d failed, %v", sent, failed, err)
		}
		got := ep.requests()
		m := got[0].msg
		if m.UserName != "alice@smith.example" || m.VendorNumber != "3856" || !slices.Equal(m.ResponsibilityKey, []string{"XXCCMS_CASE_MANAGEMENT"}) ||
			got[0].key == "" || got[0].auth != "Bearer tok" {
			t.Fatalf("message %+v", got[0])
		}
		if ok, _ := ob.LastDeliveryOK(ctx, alice); !ok {
			t.Error("flag not ok after delivery")
		}
		if sent, _, _ := ob.Deliver(ctx); sent != 0 {
			t.Fatal("a delivered message was sent again")
		}

		// the endpoint fails: retried with backoff under one key, then the user is flagged
		ep.mu.Lock()
		ep.status = http.StatusServiceUnavailable
		ep.mu.Unlock()
		sd.update(t, func(ctx context.Context, tx store.Tx) error {
			return tx.RemoveMembers(ctx, sd.groups["LAA CCMS Case Workers"], []string{alice})
		})
		if _, err := r.Full(ctx, RunOptions{}); err != nil {
			t.Fatal(err)
		}
		sent, failed, err = ob.Deliver(ctx)
		if err != nil || sent != 0 || failed != 1 {
			t.Fatalf("deliver to a failing endpoint: %d sent, %d failed, %v", sent, failed, err)
		}
		retries := ep.requests()[1:]
		if len(retries) != 3 || retries[0].key != retries[2].key || len(retries[0].msg.ResponsibilityKey) != 0 {
			t.Fatalf("retries %+v", retries)
		}
		if !slices.Equal(delays, []time.Duration{time.Second, 2 * time.Second}) {
			t.Errorf("backoff %v", delays)
		}
		if ok, _ := ob.LastDeliveryOK(ctx, alice); ok {
			t.Error("flag ok after a failed delivery")
		}

		// resend --failed once the endpoint is back
		ep.mu.Lock()
		ep.status = http.StatusOK
		ep.mu.Unlock()
		sent, failed, err = ob.Resend(ctx)
		if err != nil || sent != 1 || failed != 0 {
			t.Fatalf("resend: %d sent, %d failed, %v", sent, failed, err)
		}
		if ok, _ := ob.LastDeliveryOK(ctx, alice); !ok {
			t.Error("flag not ok after resend")
		}
		if sent, _, _ := ob.Resend(ctx); sent != 0 {
			t.Error("resend sent again with nothing failed")
		}
	})
}
