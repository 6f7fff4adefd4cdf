package cwasync_test

import (
	"context"
	"net"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/config"
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
	url := benchFake(b, cwafake.NewHandler(fx, apiKey))
	conc := config.DefaultCWAConcurrency // BENCH_CWA_CONCURRENCY overrides
	if v, err := strconv.Atoi(os.Getenv("BENCH_CWA_CONCURRENCY")); err == nil && v > 0 {
		conc = v
	}
	api, err := cwasync.NewClient(cwasync.ClientOptions{BaseURL: url, APIKey: apiKey, MaxConns: conc})
	if err != nil {
		b.Fatal(err)
	}
	for _, be := range backends {
		if be.name == "sqlite-single-puts" {
			continue
		}
		b.Run(be.name, func(b *testing.B) {
			b.Run("initial", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					st := be.open(b)
					seedUsers(b, st)
					s := cwasync.New(api, st, cwasync.Options{Concurrency: conc})
					runID := benchRun(b, st)
					pg0 := pgCPU(b, be.name)
					cpu0 := cpuTime()
					b.StartTimer()
					rep, err := s.Sync(context.Background(), runID, false)
					b.StopTimer()
					b.ReportMetric((cpuTime() - cpu0).Seconds(), "cpu-s")
					reportPGCPU(b, pg0, pgCPU(b, be.name))
					if err != nil {
						b.Fatal(err)
					}
					reportPhases(b, rep)
					if rep.Counts["legacy_logins_created"] != benchLogins || rep.Counts["linked"] != benchUsers {
						b.Fatalf("counts %v", rep.Counts)
					}
					checkBulkRun(b, st, runID, rep)
					b.StartTimer()
				}
			})
			b.Run("repeat", func(b *testing.B) {
				st := be.open(b)
				seedUsers(b, st)
				s := cwasync.New(api, st, cwasync.Options{Concurrency: conc})
				if _, err := s.Sync(context.Background(), "", false); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					runID := benchRun(b, st)
					pg0 := pgCPU(b, be.name)
					cpu0 := cpuTime()
					b.StartTimer()
					rep, err := s.Sync(context.Background(), runID, false)
					b.StopTimer()
					b.ReportMetric((cpuTime() - cpu0).Seconds(), "cpu-s")
					reportPGCPU(b, pg0, pgCPU(b, be.name))
					if err != nil {
						b.Fatal(err)
					}
					reportPhases(b, rep)
					if rep.Writes != 0 {
						b.Fatalf("repeat made %d writes, want 0", rep.Writes)
					}
					b.StartTimer()
				}
			})
		})
	}
}

// benchFake serves h over loopback TCP for a benchmark and returns its
// URL: with cwafake.ServeLean (a minimal HTTP/1.1 server: the fake runs in
// the benchmark's process, and net/http's server costs about as much CPU
// per request as the client being measured, CPU the real CWA spends on its
// own machine), or with net/http's server when BENCH_CWA_FAKE=nethttp.
func benchFake(b *testing.B, h *cwafake.Handler) string {
	b.Helper()
	if os.Getenv("BENCH_CWA_FAKE") == "nethttp" {
		srv := httptest.NewServer(h)
		b.Cleanup(srv.Close)
		return srv.URL
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cwafake.ServeLean(ln, h) }()
	b.Cleanup(func() {
		_ = ln.Close()
		if err := <-done; err != nil {
			b.Errorf("fake: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// checkBulkRun (untimed): after the initial import the audit chain is
// valid and the run has one item per reported item (75,000 and more).
func checkBulkRun(b *testing.B, st store.Store, runID string, rep *cwasync.Report) {
	b.Helper()
	ctx := context.Background()
	v, err := st.VerifyAudit(ctx)
	if err != nil || !v.OK() || v.Checked < benchFirms+benchFirms*benchOffices+benchLogins+benchUsers {
		b.Fatalf("audit chain after the import: checked %d, problems %v, %v", v.Checked, v.Problems, err)
	}
	n := 0
	for after := int64(0); ; {
		its, err := st.ListRunItems(ctx, store.RunItemQuery{RunID: runID, AfterSeq: after, Limit: 10000})
		if err != nil {
			b.Fatal(err)
		}
		n += len(its)
		if len(its) < 10000 {
			break
		}
		after = its[len(its)-1].Seq
	}
	if n != len(rep.Items) || n < benchFirms+benchFirms*benchOffices+benchLogins+benchUsers {
		b.Fatalf("run has %d items, the report %d", n, len(rep.Items))
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

// benchRun records a run, as the scheduler does, so the sync writes its
// run items.
func benchRun(b *testing.B, st store.Store) string {
	b.Helper()
	id := uuid.NewString()
	err := st.Update(context.Background(), audit.Meta{Actor: audit.ActorScheduler, RunID: id}, func(ctx context.Context, tx store.Tx) error {
		return tx.CreateRun(ctx, &directory.Run{ID: id, Job: "cwa", Trigger: "manual", Status: directory.RunRunning, StartedAt: time.Now()})
	})
	if err != nil {
		b.Fatal(err)
	}
	return id
}

// cpuTime is the CPU time (user + system) this process has used: the
// client, the in-process fake and the store driver, not the PostgreSQL
// server. On a machine shared with other work it is steadier than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pgCPU reads the CPU time (user + system, from /proc) of every client
// backend of the test cluster, which scripts/test-env.sh runs on this
// machine for this process alone; nil for other stores or when it cannot
// be read (the pg-cpu-s figure is then omitted).
func pgCPU(b *testing.B, store string) map[int]time.Duration {
	b.Helper()
	dsn := os.Getenv("DIRSYNCD_TEST_PG_DSN")
	if store != "postgres" || dsn == "" {
		return nil
	}
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`)
	if err != nil {
		return nil
	}
	defer rows.Close()
	out := map[int]time.Duration{}
	for rows.Next() {
		var pid int
		if rows.Scan(&pid) != nil {
			return nil
		}
		raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		st := string(raw)
		i := strings.LastIndexByte(st, ')')
		f := strings.Fields(st[i+1:]) // f[0] is field 3 (state); utime, stime are fields 14, 15
		if i < 0 || len(f) < 13 {
			continue
		}
		ut, err1 := strconv.ParseInt(f[11], 10, 64)
		stime, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 == nil && err2 == nil {
			out[pid] = time.Duration(ut+stime) * time.Second / 100 // USER_HZ
		}
	}
	if rows.Err() != nil {
		return nil
	}
	return out
}

// reportPGCPU adds the PostgreSQL backends' CPU between two readings as
// pg-cpu-s (a backend that started in between counts from zero).
func reportPGCPU(b *testing.B, before, after map[int]time.Duration) {
	if before == nil || after == nil {
		return
	}
	var d time.Duration
	for pid, t := range after {
		d += t - before[pid]
	}
	b.ReportMetric(d.Seconds(), "pg-cpu-s")
}

// BenchmarkClientUserOffices measures one per-login request against the
// in-process fake (client and server CPU), 8 in flight as in a sync: the
// floor of the fetch phase, which makes one request per firm and per login.
func BenchmarkClientUserOffices(b *testing.B) {
	fx := cwafake.Generate(cwafake.GenOptions{Firms: 10, OfficesPerFirm: 3, Logins: 100})
	url := benchFake(b, cwafake.NewHandler(fx, apiKey))
	api, err := cwasync.NewClient(cwasync.ClientOptions{BaseURL: url, APIKey: apiKey, MaxConns: 8})
	if err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(4) // 2 cores × 4 = 8 in flight
	cpu0 := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := api.UserOffices(context.Background(), "LOGIN7"); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}
