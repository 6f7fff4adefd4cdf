package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/internal/testenv"
	"github.com/dirsyncd/dirsyncd/mapping"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/store/postgres"
	"github.com/dirsyncd/dirsyncd/store/sqlite"
)

// benchCleanup closes and removes the shared benchmark databases (TestMain).
var benchCleanup = func() {}

func TestMain(m *testing.M) {
	code := m.Run()
	benchCleanup()
	os.Exit(code)
}

// benchWorld builds the benchmark data set in a fresh SQLite store (see
// benchWorldOn).
func benchWorld(b *testing.B) (store.Store, *Reconciler, []string, map[string]string) {
	b.Helper()
	return benchWorldOn(b, "sqlite")
}

// benchWorldOn builds the benchmark data set in a fresh store of the given
// backend ("sqlite": a temp file; "postgres": a fresh database of the test
// cluster, testenv.Postgres): users (DIRSYNCD_BENCH_USERS, default 100,000)
// in 500 firms (450 providers, 50 chambers, 3 offices each), each with a
// SCIM link and a firm membership, 2,000 groups (GNNNN; 100 nested in
// others), every user in 2 groups; then one full reconcile creates the
// grants. Each backend's data set is built once per process and shared by
// the benchmarks (the event benchmark leaves it converged, so the no-op one
// stays a no-op).
func benchWorldOn(b *testing.B, backend string) (store.Store, *Reconciler, []string, map[string]string) {
	b.Helper()
	benchMu.Lock()
	w := benchData[backend]
	if w == nil {
		w = &benchSet{}
		benchData[backend] = w
	}
	benchMu.Unlock()
	w.once.Do(func() { w.s, w.r, w.ids, w.groups = buildBenchWorld(b, backend) })
	if w.s == nil {
		b.Fatal("building the data set failed")
	}
	return w.s, w.r, w.ids, w.groups
}

type benchSet struct {
	once   sync.Once
	s      store.Store
	r      *Reconciler
	ids    []string
	groups map[string]string
}

var (
	benchMu   sync.Mutex
	benchData = map[string]*benchSet{}
)

// processTB is a testing.TB whose cleanups run when the test binary exits
// (TestMain), not when the benchmark that asked first ends: the PostgreSQL
// data set outlives the sub-benchmark (and its b.N rounds) that built it.
type processTB struct{ testing.TB }

func (processTB) Cleanup(f func()) {
	prev := benchCleanup
	benchCleanup = func() { f(); prev() }
}

// benchStores picks the backends of the backend-parametrised benchmarks:
// DIRSYNCD_BENCH_STORES, comma-separated (sqlite, postgres); "" = both.
func benchStores() []string {
	if v := os.Getenv("DIRSYNCD_BENCH_STORES"); v != "" {
		return strings.Split(v, ",")
	}
	return []string{"sqlite", "postgres"}
}

func buildBenchWorld(b *testing.B, backend string) (store.Store, *Reconciler, []string, map[string]string) {
	nUsers := 100_000
	if v := os.Getenv("DIRSYNCD_BENCH_USERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		nUsers = n
	}
	ctx := context.Background()
	var s store.Store
	reuse := false
	switch backend {
	case "sqlite":
		// DIRSYNCD_BENCH_DB=FILE keeps the data set in FILE, and reuses it when
		// FILE exists (for iterating; recorded figures use a fresh data set).
		path, keep := os.LookupEnv("DIRSYNCD_BENCH_DB")
		if !keep {
			dir, err := os.MkdirTemp("", "dirsyncd-reconcile-bench-")
			if err != nil {
				b.Fatal(err)
			}
			prev := benchCleanup
			benchCleanup = func() { _ = os.RemoveAll(dir); prev() }
			path = filepath.Join(dir, "bench.db")
		}
		_, statErr := os.Stat(path)
		reuse = keep && statErr == nil
		st, err := sqlite.Open(ctx, path, sqlite.Options{})
		if err != nil {
			b.Fatal(err)
		}
		s = st
	case "postgres":
		dsn := testenv.Postgres(processTB{b}) // dropped at exit, after the store is closed
		st, err := postgres.Open(ctx, dsn, postgres.Options{})
		if err != nil {
			b.Fatal(err)
		}
		s = st
	default:
		b.Fatalf("unknown benchmark store %q", backend)
	}
	prev := benchCleanup
	benchCleanup = func() { _ = s.Close(); prev() }
	if err := s.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	if reuse {
		return reuseBenchWorld(b, s)
	}
	start := time.Now()
	up := func(fn func(ctx context.Context, tx store.Tx) error) {
		if err := s.Update(ctx, audit.Meta{Actor: "bench"}, fn); err != nil {
			b.Fatal(err)
		}
	}
	const nFirms, nGroups = 500, 2000
	up(func(ctx context.Context, tx store.Tx) error {
		for i := range nFirms {
			t := directory.FirmLegalServicesProvider
			if i%10 == 9 {
				t = directory.FirmChambers
			}
			f := &directory.Firm{Number: strconv.Itoa(1000 + i), Name: fmt.Sprintf("Firm %d", i), Type: t, Enabled: true}
			if err := tx.PutFirm(ctx, f); err != nil {
				return err
			}
			for j := range 3 {
				o := &directory.Office{Code: fmt.Sprintf("O%05d", i*3+j), FirmNumber: f.Number, Active: true}
				if err := tx.PutOffice(ctx, o); err != nil {
					return err
				}
			}
		}
		return nil
	})
	ids := make([]string, 0, nUsers)
	const chunk = 5000
	for lo := 0; lo < nUsers; lo += chunk {
		up(func(ctx context.Context, tx store.Tx) error {
			var batch []*directory.User
			for i := lo; i < min(lo+chunk, nUsers); i++ {
				firm := i % nFirms
				dept := "civil"
				if i%3 == 0 {
					dept = "crime"
				}
				batch = append(batch, &directory.User{
					UserName: fmt.Sprintf("user%06d@firm%d.example", i, firm), Email: fmt.Sprintf("user%06d@firm%d.example", i, firm),
					Active: true, UserType: "Employee", FirmNumber: strconv.Itoa(1000 + firm),
					Attrs: json.RawMessage(fmt.Sprintf(`{"officeCodes":"O%05d","department":%q}`, firm*3+i%3, dept)),
				})
			}
			if _, _, err := tx.UpsertUsers(ctx, batch); err != nil {
				return err
			}
			for _, u := range batch {
				ids = append(ids, u.ID)
				if err := tx.PutLink(ctx, directory.SourceLink{UserID: u.ID, Source: "scim:entra", Key: "ext-" + u.UserName}); err != nil {
					return err
				}
				if err := tx.PutFirmMembership(ctx, directory.FirmMembership{UserID: u.ID, FirmNumber: u.FirmNumber, Source: "scim:entra"}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	groups := map[string]string{}
	members := make([][]string, nGroups)
	for i, id := range ids {
		members[i%nGroups] = append(members[i%nGroups], id)
		members[(i*7+3)%nGroups] = append(members[(i*7+3)%nGroups], id)
	}
	up(func(ctx context.Context, tx store.Tx) error {
		for g := range nGroups {
			grp := &directory.Group{Source: "scim:entra", DisplayName: fmt.Sprintf("G%04d", g)}
			if err := tx.CreateGroup(ctx, grp); err != nil {
				return err
			}
			groups[grp.DisplayName] = grp.ID
			if err := tx.AddMembers(ctx, grp.ID, members[g]); err != nil {
				return err
			}
		}
		for g := range 100 { // G10xx nested in G00xx
			if err := tx.AddGroupChild(ctx, groups[fmt.Sprintf("G%04d", g)], groups[fmt.Sprintf("G%04d", 1000+g)]); err != nil {
				return err
			}
		}
		return nil
	})
	r := benchReconciler(b, s)
	rep, err := r.Full(ctx, RunOptions{Trigger: "manual"})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("data set: %d users, %d groups, %d grants created, built in %s", len(ids), nGroups, rep.Applied, time.Since(start).Round(time.Second))
	return s, r, ids, groups
}

// cpuTime is the CPU time (user + system) this process has used: with other
// work on the machine's cores it says more than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchReconciler(b *testing.B, s store.Store) *Reconciler {
	cat, err := mapping.LoadCatalogue(filepath.Join("..", "configs", "catalogue.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	rules, err := mapping.LoadRules(filepath.Join("testdata", "bench_rules.yaml"), cat)
	if err != nil {
		b.Fatal(err)
	}
	if len(rules.Rules) != 20 {
		b.Fatalf("%d rules", len(rules.Rules))
	}
	workers, _ := strconv.Atoi(os.Getenv("DIRSYNCD_BENCH_WORKERS")) // 0 = default
	return New(s, mapping.NewEngine(cat, rules), Options{Guard: Guard{MinRevokes: 1 << 30}, BatchSize: 2000, Workers: workers})
}

// reuseBenchWorld reads the ids of a kept data set (DIRSYNCD_BENCH_DB).
func reuseBenchWorld(b *testing.B, s store.Store) (store.Store, *Reconciler, []string, map[string]string) {
	ctx := context.Background()
	var ids []string
	for after := ""; ; {
		us, err := s.ListUsersAfter(ctx, after, pageSize)
		if err != nil {
			b.Fatal(err)
		}
		for _, u := range us {
			ids = append(ids, u.ID)
		}
		if len(us) < pageSize {
			break
		}
		after = us[len(us)-1].ID
	}
	gs, err := s.ListGroups(ctx, store.GroupQuery{Limit: -1})
	if err != nil {
		b.Fatal(err)
	}
	groups := map[string]string{}
	for _, g := range gs.Items {
		groups[g.DisplayName] = g.ID
	}
	b.Logf("data set reused: %d users, %d groups", len(ids), len(groups))
	return s, benchReconciler(b, s), ids, groups
}

// peakHeap samples the heap in use until stop is closed.
func peakHeap(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var peak uint64
		var ms runtime.MemStats
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

// BenchmarkFullReconcileNoop: a full reconcile with nothing to change over
// the data set, on each backend (sub-benchmarks sqlite and postgres,
// DIRSYNCD_BENCH_STORES); it must write nothing. Reports peak heap in MB and
// the CPU seconds of this process per op (on PostgreSQL the server's
// processes do the reading, and are not counted).
func BenchmarkFullReconcileNoop(b *testing.B) {
	for _, backend := range benchStores() {
		b.Run(backend, func(b *testing.B) { benchFullNoop(b, backend) })
	}
}

func benchFullNoop(b *testing.B, backend string) {
	s, r, _, _ := benchWorldOn(b, backend)
	ctx := context.Background()
	n := countAudit(b, s)
	runtime.GC()
	stop := make(chan struct{})
	peak := peakHeap(stop)
	// DIRSYNCD_BENCH_CPUPROFILE=FILE profiles the timed runs only (go test
	// -cpuprofile also covers building the data set).
	if path := os.Getenv("DIRSYNCD_BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path + "." + backend)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		defer pprof.StopCPUProfile() // idempotent: stopped before the audit count below
	}
	cpu0 := cpuTime()
	b.ResetTimer()
	for range b.N {
		rep, err := r.Full(ctx, RunOptions{Trigger: "schedule"})
		if err != nil {
			b.Fatal(err)
		}
		if len(rep.Plan.Changes) != 0 || rep.RunID != "" {
			b.Fatalf("no-op reconcile planned %d changes", len(rep.Plan.Changes))
		}
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	pprof.StopCPUProfile()
	close(stop)
	b.ReportMetric(float64(<-peak)/(1<<20), "peak-heap-MB")
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
	if countAudit(b, s) != n {
		b.Fatal("a no-op reconcile wrote audit events")
	}
}

// BenchmarkUserReconcile: one user joins a mapped group and is reconciled
// event-style (Users), as the worker does after a SCIM PATCH; each op is one
// join + reconcile, measured end to end through the store.
func BenchmarkUserReconcile(b *testing.B) {
	s, r, ids, groups := benchWorld(b)
	ctx := context.Background()
	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		u := ids[(i*7919)%len(ids)]
		g := groups[fmt.Sprintf("G%04d", 1700+i%100)] // rule r17: crime-apply + crime-form
		if err := s.Update(ctx, audit.Meta{Actor: "scim:bench"}, func(ctx context.Context, tx store.Tx) error {
			return tx.AddMembers(ctx, g, []string{u})
		}); err != nil {
			b.Fatal(err)
		}
		if _, err := r.Users(ctx, []string{u}, RunOptions{Trigger: "event"}); err != nil {
			b.Fatal(err)
		}
		if _, err := s.GetGrant(ctx, directory.GrantKey{UserID: u, FirmNumber: mustFirm(b, s, u), Service: "crime-apply", Role: "access"}); err != nil {
			b.Fatalf("grant not there after reconcile: %v", err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, "p99-ms")
}

func mustFirm(b *testing.B, s store.Store, id string) string {
	u, err := s.GetUser(context.Background(), id)
	if err != nil {
		b.Fatal(err)
	}
	return u.FirmNumber
}
