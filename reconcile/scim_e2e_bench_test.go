package reconcile

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/auth"
	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/scim"
)

// BenchmarkSCIMPatchToGrant: end to end over the 100k data set — a SCIM
// PATCH adds a user to a mapped group (the real SCIM handler, which enqueues
// the user), the worker reconciles, and the op ends when the grant exists.
// Reports p99 in ms.
func BenchmarkSCIMPatchToGrant(b *testing.B) {
	s, r, ids, groups := benchWorld(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan []string, 16)
	w := NewWorker(r, WorkerOptions{OnBatch: func(ids []string, err error) {
		if err != nil {
			b.Errorf("worker: %v", err)
		}
		done <- ids
	}})
	stopped := make(chan struct{})
	go func() { _ = w.Run(ctx); close(stopped) }()
	defer func() { cancel(); <-stopped }()
	v, err := auth.NewVerifier([]config.TokenConfig{{Name: "entra", Token: config.NewSecret("bench-token-entra-0123456789"), Scopes: []string{"scim"}}})
	if err != nil {
		b.Fatal(err)
	}
	h, err := scim.New(s, v, scim.Options{Enqueuer: w})
	if err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	b.ResetTimer()
	next := 0
	for i := range b.N {
		// a user without the grant yet, so the op proves the event produced it
		var u string
		for {
			u = ids[(next*104729+17)%len(ids)]
			next++
			if _, err := s.GetGrant(ctx, directory.GrantKey{UserID: u, FirmNumber: mustFirm(b, s, u), Service: "crime-form", Role: "submit-access"}); err != nil {
				break
			}
		}
		g := groups[fmt.Sprintf("G%04d", 1700+(i*13)%100)] // rule r17: crime-apply + crime-form
		t0 := time.Now()
		body := `{"schemas":["` + scim.URNPatchOp + `"],"Operations":[{"op":"add","path":"members","value":[{"value":"` + u + `"}]}]}`
		req := httptest.NewRequest(http.MethodPatch, "/Groups/"+g, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer bench-token-entra-0123456789")
		req.Header.Set("Content-Type", "application/scim+json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code/100 != 2 {
			b.Fatalf("PATCH: %d %s", rec.Code, rec.Body.String())
		}
		for {
			select {
			case got := <-done:
				if !slices.Contains(got, u) {
					continue
				}
			case <-time.After(30 * time.Second):
				b.Fatal("the worker never reconciled the user")
			}
			break
		}
		if _, err := s.GetGrant(ctx, directory.GrantKey{UserID: u, FirmNumber: mustFirm(b, s, u), Service: "crime-form", Role: "submit-access"}); err != nil {
			b.Fatalf("grant missing after the event: %v", err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, "p99-ms")
}
