package caseaccess_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/caseaccess"
)

// Benchmark data: 100,000 users, 10,000 cases of 100 invites each
// (1,000,000 invites). Invites with index%100 == 0 (10,000) expire in the
// same minute, t0+1m..t0+1m59s; half of the rest expire within 30 days
// after, the other half never.
const (
	benchUsers   = 100_000
	benchCases   = 10_000
	benchInvites = 1_000_000
	benchDue     = 10_000
)

func seedBench(b *testing.B, e *env) {
	b.Helper()
	start := time.Now()
	base := t0.Unix()
	var stmts []string
	switch e.st.Dialect() {
	case "sqlite":
		us := t0.UnixMicro()
		stmts = []string{
			fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM n WHERE i < %d)
INSERT INTO users (id, user_name, user_name_lc, email, email_lc, active, version, created_at, updated_at)
SELECT printf('u%%06d', i), printf('user%%06d', i), printf('user%%06d', i), printf('user%%06d@example.org', i), printf('user%%06d@example.org', i), 1, 1, %d, %d FROM n`,
				benchUsers-1, us, us),
			fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM n WHERE i < %d)
INSERT INTO cases (ref, title, created_at) SELECT printf('C%%05d', i), 'bench', %d FROM n`, benchCases-1, us),
			fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM n WHERE i < %d)
INSERT INTO case_invites (id, case_ref, user_id, role, expires_at, created_at)
SELECT printf('i%%07d', i), printf('C%%05d', i / 100), printf('u%%06d', i %% %d), 'fee-paid-judge',
  CASE WHEN i %% 100 = 0 THEN %d + (60 + (i / 100) %% 60) * 1000000
       WHEN i %% 2 = 1 THEN NULL
       ELSE %d + (86400 + i * 2) * 1000000 END, %d FROM n`, benchInvites-1, benchUsers, us, us, us),
			`ANALYZE`,
		}
	case "postgres":
		stmts = []string{
			fmt.Sprintf(`INSERT INTO users (id, user_name, user_name_lc, email, email_lc, active, version, created_at, updated_at)
SELECT 'u' || lpad(i::text, 6, '0'), 'user' || lpad(i::text, 6, '0'), 'user' || lpad(i::text, 6, '0'),
  'user' || lpad(i::text, 6, '0') || '@example.org', 'user' || lpad(i::text, 6, '0') || '@example.org', TRUE, 1, to_timestamp(%d), to_timestamp(%d)
FROM generate_series(0, %d) i`, base, base, benchUsers-1),
			fmt.Sprintf(`INSERT INTO cases (ref, title, created_at) SELECT 'C' || lpad(i::text, 5, '0'), 'bench', to_timestamp(%d) FROM generate_series(0, %d) i`, base, benchCases-1),
			fmt.Sprintf(`INSERT INTO case_invites (id, case_ref, user_id, role, expires_at, created_at)
SELECT 'i' || lpad(i::text, 7, '0'), 'C' || lpad((i / 100)::text, 5, '0'), 'u' || lpad((i %% %d)::text, 6, '0'), 'fee-paid-judge',
  CASE WHEN i %% 100 = 0 THEN to_timestamp(%d + 60 + (i / 100) %% 60)
       WHEN i %% 2 = 1 THEN NULL
       ELSE to_timestamp(%d + 86400 + i * 2) END, to_timestamp(%d)
FROM generate_series(0, %d) i`, benchUsers, base, base, base, benchInvites-1),
			`ANALYZE`,
		}
	}
	for _, q := range stmts {
		if err := e.st.TestingExecRaw(context.Background(), q); err != nil {
			b.Fatalf("seed: %v", err)
		}
	}
	if e.st.Dialect() == "postgres" {
		// A stored table is vacuumed (autovacuum's steady state): without
		// this, autovacuum's first pass over the freshly loaded 1,000,000
		// rows runs during the measurement, on the same 2 cores.
		if _, err := e.st.DB().Exec(context.Background(), `VACUUM ANALYZE`); err != nil {
			b.Fatalf("seed: vacuum: %v", err)
		}
	}
	e.reopen() // SQLite: closing checkpoints the seed's WAL into the database file
	b.Logf("%s: seeded %d invites in %s", e.st.Dialect(), benchInvites, time.Since(start).Round(time.Millisecond))
}

func benchEnvs(b *testing.B, fn func(b *testing.B, e *env)) {
	for _, be := range backends(b) {
		var e *env // seeded once: the framework may call the sub-benchmark more than once
		outer := b
		b.Run(be.name, func(b *testing.B) {
			if e == nil {
				e = newEnv(outer, be)
				seedBench(b, e)
				b.ResetTimer()
			}
			fn(b, e)
		})
	}
}

// BenchmarkExpirySweep: with 1,000,000 invites stored, revoke the 10,000
// that expire in the same minute (each with its audit event and two
// outbox notifications). The Expirer's timer fires at the earliest expiry
// (TestExpirerRevokesAtExpiry), so "revoked within N s of expiry" is the
// sweep time reported here as sweep_s.
//
//	go test -run '^$' -bench ExpirySweep -benchtime 1x ./caseaccess/
func BenchmarkExpirySweep(b *testing.B) {
	benchEnvs(b, func(b *testing.B, e *env) {
		e.clk.Set(t0.Add(2 * time.Minute)) // every one of the 10,000 is due
		var total time.Duration
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			// undo the previous run's sweep (untimed)
			if err := e.st.TestingExecRaw(e.ctx, `UPDATE case_invites SET revoked_at = NULL, revoke_reason = '' WHERE revoke_reason = 'expired'`); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			start := time.Now()
			n, err := e.svc.ExpireDue(e.ctx, admin, 1000)
			d := time.Since(start)
			if err != nil || n != benchDue {
				b.Fatalf("expired %d, %v; want %d", n, err, benchDue)
			}
			total += d
		}
		per := total / time.Duration(b.N)
		b.ReportMetric(per.Seconds(), "sweep_s")
		b.ReportMetric(float64(benchDue)/per.Seconds(), "invites/s")
		if next, ok, err := e.cs.NextExpiry(e.ctx); err != nil || !ok || !next.After(t0.Add(2*time.Minute)) {
			b.Fatalf("next expiry after the sweep: %v %v %v", next, ok, err)
		}
	})
}

// BenchmarkDecisionEndpoint: GET /api/v1/cases/{ref}/access/{user} through
// the server (auth, middleware) with 1,000,000 invites stored. Each
// iteration asks for a random invited user twice (the first records the
// first access: a write), and every tenth also for a user without access
// (denied, with grantors). Reports p50/p99 per kind in ms.
//
//	go test -run '^$' -bench DecisionEndpoint -benchtime 20000x ./caseaccess/
func BenchmarkDecisionEndpoint(b *testing.B) {
	benchEnvs(b, func(b *testing.B, e *env) {
		h := apiServer(b, e)
		rng := rand.New(rand.NewPCG(1, 2))
		var first, repeat, denied []time.Duration
		get := func(path string) (time.Duration, int) {
			// built directly, not parsed from text by httptest.NewRequest
			// (its 4 KiB reader per request made the harness itself a large
			// part of the garbage the measured handler's GC collects)
			r, err := http.NewRequest("GET", "http://dirsyncd.test"+path, nil)
			if err != nil {
				b.Fatal(err)
			}
			r.RequestURI, r.RemoteAddr = path, "192.0.2.1:1234"
			r.Header.Set("Authorization", "Bearer read-token")
			w := httptest.NewRecorder()
			start := time.Now()
			h.ServeHTTP(w, r)
			return time.Since(start), w.Code
		}
		for i := 0; b.Loop(); i++ {
			k := rng.IntN(benchInvites)
			path := fmt.Sprintf("/api/v1/cases/C%05d/access/u%06d", k/100, k%benchUsers)
			d, code := get(path)
			if code != http.StatusOK {
				b.Fatalf("%s: %d", path, code)
			}
			first = append(first, d)
			d, _ = get(path)
			repeat = append(repeat, d)
			if i%10 == 0 {
				d, code = get(fmt.Sprintf("/api/v1/cases/C%05d/access/u%06d", k/100, (k%benchUsers+50_000)%benchUsers))
				if code != http.StatusOK {
					b.Fatalf("denied: %d", code)
				}
				denied = append(denied, d)
			}
		}
		report := func(name string, ds []time.Duration) {
			if len(ds) == 0 {
				return
			}
			slices.Sort(ds)
			b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, name+"_p50_ms")
			b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds())/1000, name+"_p99_ms")
		}
		report("first", first)
		report("repeat", repeat)
		report("denied", denied)
		_ = caseaccess.ViaInvite
	})
}

// BenchmarkExpiryRealTime: the Expirer on the real clock with 1,000,000
// invites stored. The 10,000 same-minute invites are moved to expire over
// the minute starting 5 s from now (60 distinct seconds; the other expiring
// invites move a day ahead of now); the benchmark waits until every one of
// the 10,000 is revoked and reports, from the store, how late each
// revocation was stamped after its expiry (revoked_at - expires_at: the
// sweep's clock at the start of the batch that revoked it; the batch
// commits within its pass, see BenchmarkExpirySweep). One op only:
//
//	go test -run '^$' -bench ExpiryRealTime -benchtime 1x ./caseaccess/
func BenchmarkExpiryRealTime(b *testing.B) {
	benchEnvs(b, func(b *testing.B, e *env) {
		if b.N > 1 {
			b.Skip("one op only: -benchtime 1x")
		}
		// move expiries by shift: the later ones (495,000) first, then the
		// 10,000 (before t0+2m) to start 3 s after that slow update
		move := func(shift time.Duration, cond string) {
			cut := t0.Add(2 * time.Minute)
			q := fmt.Sprintf(`UPDATE case_invites SET expires_at = expires_at + %d WHERE expires_at %s %d`, shift.Microseconds(), cond, cut.UnixMicro())
			if e.st.Dialect() == "postgres" {
				q = fmt.Sprintf(`UPDATE case_invites SET expires_at = expires_at + interval '%d microseconds' WHERE expires_at %s to_timestamp(%d)`,
					shift.Microseconds(), cond, cut.Unix())
			}
			if err := e.st.TestingExecRaw(e.ctx, q); err != nil {
				b.Fatal(err)
			}
		}
		moveStart := time.Now()
		move(time.Since(t0), ">")
		b.Logf("%s: moved the later expiries in %s", e.st.Dialect(), time.Since(moveStart).Round(time.Millisecond))
		start := time.Now().Add(3 * time.Second).Truncate(time.Second)
		move(start.Sub(t0.Add(time.Minute)), "<=") // t0+1m is the earliest same-minute expiry
		// the service and the Expirer on the real clock
		svc, err := caseaccess.New(caseaccess.Options{Store: e.cs})
		if err != nil {
			b.Fatal(err)
		}
		sweeps := make(chan caseaccess.SweepResult, 1000)
		x, err := caseaccess.NewExpirer(caseaccess.ExpirerOptions{Service: svc, Store: e.cs, Holder: "bench",
			OnSweep: func(r caseaccess.SweepResult) { sweeps <- r }})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(e.ctx)
		done := make(chan error, 1)
		b.ResetTimer()
		go func() { done <- x.Run(ctx) }()
		expired, passes := 0, 0
		deadline := time.After(start.Add(60*time.Second + 2*time.Minute).Sub(time.Now()))
		for expired < benchDue {
			select {
			case r := <-sweeps:
				if r.Err != nil {
					b.Fatalf("sweep: %v", r.Err)
				}
				expired += r.Expired
				passes++
			case <-deadline:
				b.Fatalf("only %d of %d invites expired 2 minutes after the last expiry", expired, benchDue)
			}
		}
		b.StopTimer()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		var late []time.Duration
		for k := 0; k < benchCases; k++ { // the same-minute invites are i%07d with i = 100k
			inv, err := e.cs.GetInvite(e.ctx, fmt.Sprintf("i%07d", k*100))
			if err != nil {
				b.Fatal(err)
			}
			if inv.RevokedAt == nil || inv.RevokeReason != caseaccess.ReasonExpired || inv.ExpiresAt == nil {
				b.Fatalf("invite %s not expired: %+v", inv.ID, inv)
			}
			late = append(late, inv.RevokedAt.Sub(*inv.ExpiresAt))
		}
		slices.Sort(late)
		b.ReportMetric(late[len(late)-1].Seconds(), "max_late_s")
		b.ReportMetric(late[len(late)*99/100].Seconds(), "p99_late_s")
		b.ReportMetric(late[len(late)/2].Seconds(), "p50_late_s")
		b.ReportMetric(float64(passes), "passes")
	})
}
