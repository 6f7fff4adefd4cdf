package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/scheduler"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/store/sqlite"
)

// Test-only job kinds, implemented by a test feature.
var (
	testRelease = make(chan struct{})
	testStarted = make(chan string, 1)
)

func init() {
	config.JobKinds = append(config.JobKinds, "test-fail", "test-block", "test-unimplemented")
	register(feature{
		Name: "zz-test",
		Jobs: func(app *App) map[string]scheduler.JobFunc {
			return map[string]scheduler.JobFunc{
				"test-fail": func(ctx context.Context, run *scheduler.RunContext) error {
					run.Add("seen", 2)
					return errors.New("source unreachable")
				},
				"test-block": func(ctx context.Context, run *scheduler.RunContext) error {
					testStarted <- run.RunID
					select {
					case <-testRelease:
						return nil
					case <-ctx.Done():
						return ctx.Err()
					}
				},
			}
		},
	})
}

// syncBuffer is a bytes.Buffer safe for the server goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb syncBuffer
	code := execute(context.Background(), args, &out, &errb)
	return result{code, out.String(), errb.String()}
}

// writeConfig writes a SQLite development config in a temp dir, and
// moves to the repository root, where the default paths of the feature
// sections (configs/catalogue.yaml, ...) resolve, as when running
// `bin/dirsyncd serve` from a checkout.
func writeConfig(t *testing.T, extra string) (path, db string) {
	t.Helper()
	t.Chdir("../..")
	dir := t.TempDir()
	db = filepath.Join(dir, "var", "d.db")
	doc := fmt.Sprintf(`env: development
log: {level: debug}
store: {driver: sqlite, path: %s}
server: {listen: "127.0.0.1:0", shutdownTimeout: 5s}
tokens:
  - {name: ops, token: ops-secret-token-1234, scopes: [admin:write]}
  - {name: dev, dev: true, token: env:DIRSYNCD_TEST_UNSET_DEV_TOKEN, scopes: [scim, admin:read, admin:write, support]}
scheduler:
  jobs:
    - {name: audit-verify, kind: audit-verify, schedule: "@every 1h"}
    - {name: failing, kind: test-fail}
    - {name: blocking, kind: test-block}
%s`, db, extra)
	path = filepath.Join(dir, "dirsyncd.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, db
}

func TestVersion(t *testing.T) {
	r := run(t, "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "dirsyncd dev") {
		t.Fatalf("%+v", r)
	}
}

// TestWrongCommandLine: a mistyped command or a stray argument is a
// usage error (exit 2) naming it, never a success: `dirsyncd audit verfy`
// in a cron job must not exit 0 having verified nothing.
func TestWrongCommandLine(t *testing.T) {
	for _, args := range [][]string{{"bogus"}, {"audit", "verfy"}, {"migrate", "extra"}, {"version", "x"}} {
		r := run(t, args...)
		if r.code != 2 || !strings.Contains(r.stderr, fmt.Sprintf("unknown command %q", args[len(args)-1])) {
			t.Errorf("%v: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
	if r := run(t, "audit"); r.code != 0 || !strings.Contains(r.stdout, "Available Commands") {
		t.Errorf("audit alone: exit %d, stdout %q", r.code, r.stdout)
	}
}

func TestCheckConfig(t *testing.T) {
	good, _ := writeConfig(t, "")
	if r := run(t, "check-config", "--config", good); r.code != 0 || !strings.Contains(r.stdout, "configuration OK") {
		t.Fatalf("valid: %+v", r)
	}
	t.Setenv(config.EnvConfig, good)
	if r := run(t, "check-config"); r.code != 0 || !strings.Contains(r.stdout, good) {
		t.Fatalf("from %s: %+v", config.EnvConfig, r)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	doc := "env: prod\nserver: {listen: nope, colour: blue}\ntokens:\n  - {name: a, scopes: [root]}\nscheduler:\n  jobs:\n    - {name: j, kind: reconcile, schedule: \"99 * * * *\"}\n"
	if err := os.WriteFile(bad, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, "check-config", "--config", bad)
	if r.code != 2 {
		t.Fatalf("invalid: exit %d, %s", r.code, r.stderr)
	}
	for _, want := range []string{"field colour not found", "env: must be", "server.listen", "tokens[0]: set exactly one", "tokens[0].scopes[0]", "jobs[0].schedule", bad} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	// Any command refuses an invalid configuration the same way.
	if r := run(t, "migrate", "--config", bad); r.code != 2 || !strings.Contains(r.stderr, "server.listen") {
		t.Fatalf("migrate with bad config: %+v", r)
	}

	// A kind the configuration allows but this binary lacks.
	missing, _ := writeConfig(t, "    - {name: later, kind: test-unimplemented}\n")
	if r := run(t, "check-config", "--config", missing); r.code != 2 || !strings.Contains(r.stderr, `"test-unimplemented" is not implemented`) {
		t.Fatalf("unimplemented kind: %+v", r)
	}
	if r := run(t, "check-config", "--config", filepath.Join(t.TempDir(), "none.yaml")); r.code != 2 || !strings.Contains(r.stderr, "none.yaml") {
		t.Fatalf("missing file: %+v", r)
	}
}

func TestEmbeddedDefaultConfig(t *testing.T) {
	t.Chdir("../..")
	t.Setenv(config.EnvConfig, "")
	r := run(t, "check-config")
	if r.code != 0 || !strings.Contains(r.stdout, "embedded configs/dev.yaml") {
		t.Fatalf("%+v", r)
	}
}

func TestRunAndAudit(t *testing.T) {
	cfg, db := writeConfig(t, "")
	if r := run(t, "migrate", "--config", cfg); r.code != 0 || !strings.Contains(r.stdout, "migrations applied") {
		t.Fatalf("migrate: %+v", r)
	}
	r := run(t, "run", "audit-verify", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "trigger: manual") || !strings.Contains(r.stdout, "status:  ok") {
		t.Fatalf("run: %+v", r)
	}
	r = run(t, "run", "failing", "--config", cfg)
	if r.code != 1 || !strings.Contains(r.stdout, "status:  failed") || !strings.Contains(r.stdout, "source unreachable") || !strings.Contains(r.stdout, "seen: 2") {
		t.Fatalf("failing run: %+v", r)
	}
	if r := run(t, "run", "nope", "--config", cfg); r.code != 2 || !strings.Contains(r.stderr, `no job "nope"`) {
		t.Fatalf("unknown job: %+v", r)
	}

	// The runs are recorded in the store.
	st := openTestStore(t, db)
	runs, err := st.ListRuns(context.Background(), store.RunQuery{Limit: 10})
	if err != nil || len(runs) != 2 {
		t.Fatalf("runs %v %v", runs, err)
	}
	for _, rr := range runs {
		if rr.Trigger != scheduler.TriggerManual {
			t.Errorf("run %s trigger %q", rr.Job, rr.Trigger)
		}
	}
	st.Close()

	r = run(t, "audit", "list", "--config", cfg, "--actor", "scheduler", "--json")
	var events []audit.Event
	if err := json.Unmarshal([]byte(r.stdout), &events); err != nil || r.code != 0 {
		t.Fatalf("audit list: %v %+v", err, r)
	}
	if len(events) == 0 || events[0].Actor != audit.ActorScheduler || events[0].RunID == "" {
		t.Fatalf("events %+v", events)
	}
	r = run(t, "audit", "list", "--config", cfg, "--limit", "1", "--since", "1h")
	if r.code != 0 || !strings.Contains(r.stdout, "SEQ") || strings.Count(strings.TrimSpace(r.stdout), "\n") != 1 {
		t.Fatalf("audit list table: %+v", r)
	}
	if r := run(t, "audit", "list", "--config", cfg, "--actor", "nobody", "--json"); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("no events: %+v", r)
	}
	if r := run(t, "audit", "list", "--config", cfg, "--since", "last tuesday"); r.code != 2 {
		t.Fatalf("bad since: %+v", r)
	}

	if r := run(t, "audit", "verify", "--config", cfg); r.code != 0 || !strings.Contains(r.stdout, "hash chain intact") {
		t.Fatalf("verify: %+v", r)
	}
	// Tamper with an event behind the store's back.
	st = openTestStore(t, db)
	raw := st.(interface {
		TestingExecRaw(context.Context, string) error
	})
	for _, q := range []string{"DROP TRIGGER audit_events_no_update", "UPDATE audit_events SET actor = 'mallory' WHERE seq = 1"} {
		if err := raw.TestingExecRaw(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	r = run(t, "audit", "verify", "--config", cfg)
	if r.code != 1 || !strings.Contains(r.stdout, "TAMPERED") || !strings.Contains(r.stdout, "event 1: hash mismatch") {
		t.Fatalf("tampered verify: %+v", r)
	}
	if r := run(t, "run", "audit-verify", "--config", cfg); r.code != 1 || !strings.Contains(r.stdout, "problems: 1") {
		t.Fatalf("audit-verify job on a tampered log: %+v", r)
	}
}

func openTestStore(t *testing.T, path string) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestServe(t *testing.T) {
	cfg, db := writeConfig(t, "")
	addrc := make(chan net.Addr, 1)
	testServeReady = func(a net.Addr) { addrc <- a }
	t.Cleanup(func() { testServeReady = nil })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() { done <- execute(ctx, []string{"serve", "--config", cfg}, &out, &errb) }()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case code := <-done:
		t.Fatalf("serve exited %d: %s", code, errb.String())
	}
	base := "http://" + addr.String()

	// The development token is printed once, on stdout, and works.
	banner := out.String()
	i := strings.Index(banner, "Bearer ")
	if i < 0 || strings.Count(banner, "development mode") != 1 {
		t.Fatalf("no dev banner: %q", banner)
	}
	token := strings.Fields(banner[i+len("Bearer "):])[0]
	token = strings.TrimSuffix(token, "'")
	if !strings.HasPrefix(token, "dev-") {
		t.Fatalf("token %q", token)
	}

	get := func(path, tok string) int {
		req, _ := http.NewRequest("GET", base+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if c := get("/healthz", ""); c != 200 {
		t.Fatalf("healthz %d", c)
	}
	if c := get("/readyz", ""); c != 200 {
		t.Fatalf("readyz %d", c)
	}
	if c := get("/api/v1/runs", token); c != 200 {
		t.Fatalf("runs with dev token %d", c)
	}
	if c := get("/api/v1/runs", ""); c != 401 {
		t.Fatalf("runs without token %d", c)
	}

	// Trigger the blocking job over the API, then shut down while it runs:
	// it gets the deadline to finish and finishes.
	req, _ := http.NewRequest("POST", base+"/api/v1/runs", strings.NewReader(`{"job":"blocking"}`))
	req.Header.Set("Authorization", "Bearer ops-secret-token-1234")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body struct{ ID string }
	_ = json.NewDecoder(res.Body).Decode(&body)
	res.Body.Close()
	if res.StatusCode != 202 || body.ID == "" {
		t.Fatalf("trigger %d %+v", res.StatusCode, body)
	}
	if got := <-testStarted; got != body.ID {
		t.Fatalf("started %s, want %s", got, body.ID)
	}
	cancel()
	close(testRelease)
	if code := <-done; code != 0 {
		t.Fatalf("serve exit %d: %s", code, errb.String())
	}
	st := openTestStore(t, db)
	defer st.Close()
	rr, err := st.GetRun(context.Background(), body.ID)
	if err != nil || rr.Status != directory.RunOK || rr.Trigger != scheduler.TriggerManual {
		t.Fatalf("run %+v %v", rr, err)
	}
	var by string
	_ = st.Audit(context.Background(), store.AuditFilter{ObjectID: body.ID, Action: "run.trigger"}, func(e audit.Event) error {
		by = string(e.After)
		return nil
	})
	if !strings.Contains(by, `"by":"admin:ops"`) {
		t.Fatalf("trigger not attributed to the token: %q", by)
	}
	logs := errb.String()
	if strings.Contains(logs, token) || strings.Contains(logs, "ops-secret-token-1234") {
		t.Fatal("a token reached the log")
	}
	if !strings.Contains(logs, "scheduler") || !strings.Contains(logs, "request") {
		t.Fatalf("expected named component logs:\n%s", logs)
	}
}

func TestProductionLogsAreJSON(t *testing.T) {
	t.Chdir("../..")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prod.yaml")
	doc := fmt.Sprintf("store: {driver: sqlite, path: %s}\ntokens:\n  - {name: ops, token: prod-secret-token-999, scopes: [admin:read]}\n", filepath.Join(dir, "p.db"))
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	addrc := make(chan net.Addr, 1)
	testServeReady = func(a net.Addr) { addrc <- a }
	t.Cleanup(func() { testServeReady = nil })
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() { done <- execute(ctx, []string{"serve", "--config", cfg, "-c", cfg}, &out, &errb) }()
	select {
	case <-addrc:
	case code := <-done:
		t.Fatalf("serve exited %d: %s", code, errb.String())
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d", code)
	}
	if strings.Contains(out.String(), "development") || out.String() != "" {
		t.Fatalf("production printed to stdout: %q", out.String())
	}
	lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		if strings.Contains(l, "prod-secret-token-999") {
			t.Fatal("token logged")
		}
	}
	var first map[string]any
	_ = json.Unmarshal([]byte(lines[0]), &first)
	if first["msg"] != "starting" || first["level"] != "info" {
		t.Fatalf("first line %v", first)
	}
}
