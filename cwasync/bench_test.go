package cwasync_test

import (
	"context"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/cwasync"
	"github.com/dirsyncd/dirsyncd/cwasync/cwafake"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// Benchmark size (issue 5): 5,000 firms, 15,000 offices, 50,000 legacy
// logins; one login in ten has a dirsyncd user with its e-mail.
const (
	benchFirms   = 5000
	benchOffices = 3 // per firm
	benchLogins  = 50000
	benchUsers   = benchLogins / 10
)

// BenchmarkSync measures a full CWA sync from the fake over HTTP into each
// store: "initial" into an empty store (every firm, office, login and
// link created, with audit events and run items), "repeat" with no changes
// (which must write nothing). scripts/bench-cwa.sh runs it.
func BenchmarkSync(b *testing.B) {
	fx := cwafake.Generate(cwafake.GenOptions{Firms: benchFirms, OfficesPerFirm: benchOffices, Logins: benchLogins})
	h := cwafake.NewHandler(fx, apiKey)
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	api, err := cwasync.NewClient(cwasync.ClientOptions{BaseURL: srv.URL, APIKey: apiKey, MaxConns: 16})
	if err != nil {
		b.Fatal(err)
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			b.Run("initial", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					st := be.open(b)
					seedUsers(b, st)
					s := cwasync.New(api, st, cwasync.Options{Concurrency: 8})
					b.StartTimer()
					rep, err := s.Sync(context.Background(), "", false)
					if err != nil {
						b.Fatal(err)
					}
					reportPhases(b, rep)
					if rep.Counts["legacy_logins_created"] != benchLogins || rep.Counts["linked"] != benchUsers {
						b.Fatalf("counts %v", rep.Counts)
					}
				}
			})
			b.Run("repeat", func(b *testing.B) {
				st := be.open(b)
				seedUsers(b, st)
				s := cwasync.New(api, st, cwasync.Options{Concurrency: 8})
				if _, err := s.Sync(context.Background(), "", false); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					rep, err := s.Sync(context.Background(), "", false)
					if err != nil {
						b.Fatal(err)
					}
					reportPhases(b, rep)
					if rep.Writes != 0 {
						b.Fatalf("repeat made %d writes, want 0", rep.Writes)
					}
				}
			})
		})
	}
}

func seedUsers(b *testing.B, st store.Store) {
	b.Helper()
	users := make([]*directory.User, 0, benchUsers)
	for i := 0; i < benchLogins; i += 10 {
		users = append(users, &directory.User{UserName: "bench" + strconv.Itoa(i), Email: "user" + strconv.Itoa(i) + "@example.test", Active: true})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err := st.Update(ctx, audit.Meta{Actor: "bench"}, func(ctx context.Context, tx store.Tx) error {
		_, _, err := tx.UpsertUsers(ctx, users)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
}

// reportPhases adds each phase's time (of the last iteration) as a metric.
func reportPhases(b *testing.B, rep *cwasync.Report) {
	for phase, d := range rep.Took {
		b.ReportMetric(d.Seconds(), phase+"-s")
	}
}
