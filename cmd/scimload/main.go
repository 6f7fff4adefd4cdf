// Command scimload is the load generator of `make bench-scim`
// (scripts/bench-scim.sh). It creates -users users (and -groups groups of
// -members members each), then runs a mixed workload for -duration at
// -concurrency: filtered GETs (userName eq, externalId eq), PUTs of whole
// users, and group PATCHes adding or removing one member. It prints
// requests/s with p50 and p99 per phase, the CPU time per mixed request
// (this process; with -store postgres also the backends, pgcpu.go), and one
// JSON line for scripts. With an in-process target it then verifies the
// audit chain end to end and fails when it is broken. With -store postgres,
// -pg-plans prints the generic/custom plan counts of the store's prepared
// statements after the mixed phase (pgplans.go) and -pg-analyze runs
// ANALYZE between the phases (not in make bench-scim).
//
// The target is either an in-process dirsyncd SCIM handler over a real
// store and a real TCP listener (-store sqlite|postgres; the reconcile hook
// is a no-op), or any SCIM server (-target URL -token T), such as the peer.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/dirsyncd/dirsyncd/auth"
	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/scim"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/store/postgres"
	"github.com/dirsyncd/dirsyncd/store/sqlite"
	"github.com/dirsyncd/dirsyncd/store/sqlstore"
)

const (
	urnUser  = "urn:ietf:params:scim:schemas:core:2.0:User"
	urnGroup = "urn:ietf:params:scim:schemas:core:2.0:Group"
	urnPatch = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
)

type opts struct {
	target, token, storeKind, path, dsn, label string
	cpuProfile, profilePhase                   string
	pgPlans, pgAnalyze                         bool
	users, groups, members, conc, pgConns      int
	duration                                   time.Duration
	pgPool                                     *pgxpool.Pool // -store postgres: reads the backends' CPU (pgcpu.go)
	st                                         store.Store   // the in-process dirsyncd's store (nil with -target)
}

func main() {
	var o opts
	flag.StringVar(&o.target, "target", "", "SCIM base URL of an external server (e.g. http://127.0.0.1:3000/scim/v2)")
	flag.StringVar(&o.token, "token", "bench-token", "bearer token")
	flag.StringVar(&o.storeKind, "store", "sqlite", "in-process dirsyncd store: sqlite or postgres")
	flag.StringVar(&o.path, "path", "", "sqlite file (default: a new temp file)")
	flag.StringVar(&o.dsn, "dsn", os.Getenv("DIRSYNCD_BENCH_PG_DSN"), "postgres DSN (a fresh database)")
	flag.StringVar(&o.label, "label", "", "name printed with the results")
	flag.IntVar(&o.users, "users", 10000, "users created in the load phase")
	flag.IntVar(&o.groups, "groups", 20, "groups created")
	flag.IntVar(&o.members, "members", 50, "initial members per group")
	flag.IntVar(&o.conc, "concurrency", 16, "concurrent clients")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "length of the mixed phase")
	flag.IntVar(&o.pgConns, "pg-conns", config.DefaultMaxConns, "PostgreSQL pool size of the in-process dirsyncd (default: the daemon's, store.maxConns)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile to this file (of the phase -profile names)")
	flag.StringVar(&o.profilePhase, "profile", "all", "what -cpuprofile covers: all, create or mixed")
	flag.BoolVar(&o.pgAnalyze, "pg-analyze", false, "with -store postgres: ANALYZE after the create phase (the statistics autovacuum gathers within a minute or two of such a load)")
	flag.BoolVar(&o.pgPlans, "pg-plans", false, "with -store postgres: after the mixed phase, print generic/custom plan counts of the prepared statements (pgplans.go)")
	flag.Parse()
	if o.profilePhase != "all" && o.profilePhase != "create" && o.profilePhase != "mixed" {
		fmt.Fprintf(os.Stderr, "scimload: -profile must be all, create or mixed, not %q\n", o.profilePhase)
		os.Exit(2)
	}
	if err := run(context.Background(), o); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "scimload:", err)
		os.Exit(1)
	}
}

// profile starts the CPU profile when -profile names phase (or all) and
// returns the function that stops it.
func (o opts) profile(phase string) (func(), error) {
	if o.cpuProfile == "" || (o.profilePhase != phase && !(o.profilePhase == "all" && phase == "create")) {
		return func() {}, nil
	}
	f, err := os.Create(o.cpuProfile)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

func run(ctx context.Context, o opts) error {
	base := o.target
	if base == "" {
		b, stop, err := serveInProcess(ctx, &o)
		if err != nil {
			return err
		}
		defer stop()
		base = b
	}
	if o.label == "" {
		o.label = o.storeKind
		if o.target != "" {
			o.label = o.target
		}
	}
	c := &client{base: base, token: o.token, hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.conc * 2, MaxConnsPerHost: o.conc * 2}, Timeout: 60 * time.Second}}

	stopAll, err := o.profile("create")
	if err != nil {
		return err
	}
	defer stopAll()
	// Phase 1: create users.
	ids := make([]string, o.users)
	var next atomic.Int64
	create := phase(o.conc, func(worker int, rec func(time.Duration, error)) bool {
		i := int(next.Add(1)) - 1
		if i >= o.users {
			return false
		}
		t := time.Now()
		id, err := c.createUser(ctx, i)
		rec(time.Since(t), err)
		ids[i] = id
		return true
	})
	fmt.Printf("%s create %d users: %s\n", o.label, o.users, create)
	if create.errors > 0 {
		return fmt.Errorf("%d user creations failed (first: %v)", create.errors, create.firstErr)
	}
	groups := make([]string, o.groups)
	for g := range groups {
		var ms []string
		for m := 0; m < o.members; m++ {
			ms = append(ms, ids[(g*o.members+m)%len(ids)])
		}
		id, err := c.createGroup(ctx, g, ms)
		if err != nil {
			return err
		}
		groups[g] = id
	}

	if o.profilePhase == "create" {
		stopAll()
	}
	stopMixed, err := o.profile("mixed")
	if err != nil {
		return err
	}
	if o.pgAnalyze && o.pgPool != nil {
		if _, err := o.pgPool.Exec(ctx, "ANALYZE"); err != nil {
			return fmt.Errorf("analyze: %w", err)
		}
	}
	// Phase 2: mixed workload.
	cpu0 := processCPU()
	pg0 := o.pgCPU(ctx)
	deadline := time.Now().Add(o.duration)
	var mu sync.Mutex
	inGroup := map[[2]int]bool{}
	mixed := phase(o.conc, func(worker int, rec func(time.Duration, error)) bool {
		if time.Now().After(deadline) {
			return false
		}
		r := rand.IntN(100)
		i := rand.IntN(o.users)
		t := time.Now()
		var err error
		switch {
		case r < 45:
			err = c.lookup(ctx, "userName", userName(i), ids[i])
		case r < 60:
			err = c.lookup(ctx, "externalId", externalID(i), ids[i])
		case r < 80:
			err = c.put(ctx, ids[i], i, worker)
		default:
			g := rand.IntN(o.groups)
			mu.Lock()
			k := [2]int{g, i}
			add := !inGroup[k]
			inGroup[k] = add
			mu.Unlock()
			err = c.member(ctx, groups[g], ids[i], add)
		}
		rec(time.Since(t), err)
		return true
	})
	stopMixed()
	cpuPerReq := float64((processCPU() - cpu0).Microseconds()) / 1000 / float64(max(len(mixed.lat), 1))
	pgPerReq := float64(pgDelta(pg0, o.pgCPU(ctx)).Microseconds()) / 1000 / float64(max(len(mixed.lat), 1))
	pgNote := ""
	if o.pgPool != nil {
		pgNote = fmt.Sprintf(" + %.3f ms in the PostgreSQL backends", pgPerReq)
	}
	fmt.Printf("%s mixed (45%% userName GET, 15%% externalId GET, 20%% PUT, 20%% group PATCH) for %s: %s, %.3f ms CPU per request (this process)%s\n",
		o.label, o.duration, mixed, cpuPerReq, pgNote)
	res := map[string]any{"label": o.label, "create_rps": create.rps(), "create_p50_ms": create.pct(50), "create_p99_ms": create.pct(99),
		"mixed_rps": mixed.rps(), "mixed_p50_ms": mixed.pct(50), "mixed_p99_ms": mixed.pct(99), "mixed_requests": len(mixed.lat), "mixed_errors": mixed.errors, "mixed_cpu_ms_per_request": cpuPerReq}
	if o.pgPool != nil {
		res["mixed_pg_cpu_ms_per_request"] = pgPerReq
	}
	out, _ := json.Marshal(res)
	fmt.Println("RESULT " + string(out))
	if ss, ok := o.st.(*sqlstore.Store); ok && o.pgPlans && ss.Dialect() == "postgres" {
		ps, err := pgPlans(ctx, ss, o.pgConns)
		if err != nil {
			return err
		}
		printPlans(os.Stdout, o.label, ps, 100, 160)
	}
	if mixed.errors > 0 {
		return fmt.Errorf("%d mixed requests failed (first: %v)", mixed.errors, mixed.firstErr)
	}
	if o.st != nil {
		// Every write of the run is audited in its transaction: the chain
		// must verify end to end after the load (group commit included).
		v, err := o.st.VerifyAudit(ctx)
		if err != nil {
			return fmt.Errorf("verify audit chain: %w", err)
		}
		if !v.OK() {
			return fmt.Errorf("audit chain broken after the load: %v", v.Problems)
		}
		fmt.Printf("%s audit chain intact: %d events\n", o.label, v.Checked)
	}
	return nil
}

// processCPU is the user+system CPU time this process has used. Per
// request it is a figure that the other work on a shared machine barely
// moves (unlike requests/s): with an in-process target it is the server's
// and the load generator's CPU together; with -target only the generator's.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type stats struct {
	lat      []time.Duration
	elapsed  time.Duration
	errors   int
	firstErr error
}

func (s stats) rps() float64 { return float64(len(s.lat)) / s.elapsed.Seconds() }
func (s stats) pct(p int) float64 {
	if len(s.lat) == 0 {
		return 0
	}
	return float64(s.lat[(len(s.lat)-1)*p/100].Microseconds()) / 1000
}
func (s stats) String() string {
	return fmt.Sprintf("%d requests in %.1fs = %.0f req/s, p50 %.2f ms, p99 %.2f ms, %d errors",
		len(s.lat), s.elapsed.Seconds(), s.rps(), s.pct(50), s.pct(99), s.errors)
}

// phase runs step on conc workers until every step returns false.
func phase(conc int, step func(worker int, rec func(time.Duration, error)) bool) stats {
	var mu sync.Mutex
	var s stats
	rec := func(d time.Duration, err error) {
		mu.Lock()
		s.lat = append(s.lat, d)
		if err != nil {
			if s.errors == 0 {
				s.firstErr = err
			}
			s.errors++
		}
		mu.Unlock()
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for step(w, rec) {
			}
		}()
	}
	wg.Wait()
	s.elapsed = time.Since(start)
	slices.Sort(s.lat)
	return s
}

func userName(i int) string   { return fmt.Sprintf("load.user%d@bench.example", i) }
func externalID(i int) string { return fmt.Sprintf("load-ext-%d", i) }

type client struct {
	base, token string
	hc          *http.Client
}

// do sends one request and decodes the response into out (nil: the body
// is read and dropped, so that the load generator, which shares the cores
// with the server, spends no time on responses it does not look at).
func (c *client) do(ctx context.Context, method, path string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/scim+json")
	res, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode != want && !(want == 204 && res.StatusCode == 200) {
		return fmt.Errorf("%s %s: status %d: %.200s", method, path, res.StatusCode, raw)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return nil
}

// resource is the part of a SCIM resource the load generator reads.
type resource struct {
	ID string `json:"id"`
}

func userBody(i, rev int) map[string]any {
	return map[string]any{
		"schemas": []string{urnUser}, "userName": userName(i), "externalId": externalID(i), "active": true,
		"displayName": fmt.Sprintf("Load User %d rev %d", i, rev),
		"name":        map[string]any{"givenName": "Load", "familyName": fmt.Sprintf("User%d", i)},
		"emails":      []any{map[string]any{"value": userName(i), "type": "work", "primary": true}},
	}
}

func (c *client) createUser(ctx context.Context, i int) (string, error) {
	var r resource
	if err := c.do(ctx, "POST", "/Users", userBody(i, 0), http.StatusCreated, &r); err != nil {
		return "", err
	}
	return r.ID, nil
}

func (c *client) createGroup(ctx context.Context, g int, members []string) (string, error) {
	ms := []any{}
	for _, id := range members {
		ms = append(ms, map[string]any{"value": id})
	}
	var r resource
	if err := c.do(ctx, "POST", "/Groups", map[string]any{"schemas": []string{urnGroup}, "displayName": fmt.Sprintf("Load Group %d", g), "members": ms}, http.StatusCreated, &r); err != nil {
		return "", err
	}
	return r.ID, nil
}

func (c *client) lookup(ctx context.Context, attr, value, wantID string) error {
	var list struct {
		Resources []resource `json:"Resources"`
	}
	if err := c.do(ctx, "GET", "/Users?filter="+url.QueryEscape(attr+` eq "`+value+`"`), nil, http.StatusOK, &list); err != nil {
		return err
	}
	if len(list.Resources) != 1 {
		return fmt.Errorf("lookup %s=%s: %d results", attr, value, len(list.Resources))
	}
	if list.Resources[0].ID != wantID {
		return errors.New("lookup returned another user")
	}
	return nil
}

func (c *client) put(ctx context.Context, id string, i, rev int) error {
	return c.do(ctx, "PUT", "/Users/"+id, userBody(i, rev+1+rand.IntN(1000)), http.StatusOK, nil)
}

func (c *client) member(ctx context.Context, group, user string, add bool) error {
	op := map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": user}}}
	if !add {
		op = map[string]any{"op": "remove", "path": `members[value eq "` + user + `"]`}
	}
	return c.do(ctx, "PATCH", "/Groups/"+group, map[string]any{"schemas": []string{urnPatch}, "Operations": []any{op}}, http.StatusNoContent, nil)
}

// serveInProcess starts the dirsyncd SCIM handler on a real store behind a
// real TCP listener and returns its base URL.
func serveInProcess(ctx context.Context, o *opts) (string, func(), error) {
	var st store.Store
	var err error
	tmpDir := ""
	switch o.storeKind {
	case "sqlite":
		if o.path == "" {
			if tmpDir, err = os.MkdirTemp("", "scimload-"); err != nil {
				return "", nil, err
			}
			o.path = filepath.Join(tmpDir, "load.db")
		}
		st, err = sqlite.Open(ctx, o.path, sqlite.Options{})
	case "postgres":
		if o.dsn == "" {
			return "", nil, errors.New("-dsn (or DIRSYNCD_BENCH_PG_DSN) is required with -store postgres")
		}
		st, err = postgres.Open(ctx, o.dsn, postgres.Options{MaxConns: int32(o.pgConns)})
		if err == nil {
			if o.pgPool, err = pgxpool.New(ctx, o.dsn); err != nil {
				err = fmt.Errorf("connect for backend CPU: %w", err)
			}
		}
	default:
		return "", nil, fmt.Errorf("unknown -store %q", o.storeKind)
	}
	if err != nil {
		return "", nil, err
	}
	if err := st.Migrate(ctx); err != nil {
		return "", nil, err
	}
	o.st = st
	v, err := auth.NewVerifier([]config.TokenConfig{{Name: "bench", Token: config.NewSecret(o.token), Scopes: []string{"scim"}}})
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	base := "http://" + ln.Addr().String() + "/scim/v2"
	h, err := scim.New(st, v, scim.Options{BaseURL: base, Logger: zap.NewNop()})
	if err != nil {
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/scim/v2/", http.StripPrefix("/scim/v2", h))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return base, func() {
		_ = srv.Close()
		_ = st.Close()
		if o.pgPool != nil {
			o.pgPool.Close()
		}
		if tmpDir != "" {
			_ = os.RemoveAll(tmpDir)
		}
	}, nil
}
