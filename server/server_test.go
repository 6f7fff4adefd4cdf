package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/auth"
	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

const (
	tokRead    = "read-token-0123456789"
	tokWrite   = "write-token-0123456789"
	tokSCIM    = "scim-token-0123456789"
	tokSupport = "support-token-0123456789"
)

type fakeTrigger struct {
	id   string
	err  error
	jobs []string
}

func (f *fakeTrigger) Trigger(ctx context.Context, job string) (string, error) {
	f.jobs = append(f.jobs, job)
	return f.id, f.err
}

type env struct {
	srv  *Server
	st   store.Store
	logs *observer.ObservedLogs
	trig *fakeTrigger
}

func newEnv(t testing.TB) *env {
	t.Helper()
	v, err := auth.NewVerifier([]config.TokenConfig{
		{Name: "reader", Token: config.NewSecret(tokRead), Scopes: []string{auth.ScopeAdminRead}},
		{Name: "writer", Token: config.NewSecret(tokWrite), Scopes: []string{auth.ScopeAdminWrite}},
		{Name: "entra", Token: config.NewSecret(tokSCIM), Scopes: []string{auth.ScopeSCIM}},
		{Name: "ops", Token: config.NewSecret(tokSupport), Scopes: []string{auth.ScopeSupport}},
	})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	st := openStore(t)
	trig := &fakeTrigger{id: "run-1"}
	srv, err := New(Options{
		Config: config.ServerConfig{Listen: "127.0.0.1:0", MaxBodyBytes: 64, ShutdownTimeout: 5 * time.Second},
		Store:  st, Verifier: v, Trigger: trig, Logger: zap.New(core),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &env{srv: srv, st: st, logs: logs, trig: trig}
}

type resp struct {
	code   int
	header http.Header
	body   string
}

func (e *env) do(t *testing.T, method, path, token, body string, hdr ...string) resp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, path, rd)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	e.srv.Handler().ServeHTTP(w, r)
	return resp{w.Code, w.Header(), w.Body.String()}
}

func errorCode(t *testing.T, body string) string {
	t.Helper()
	var b ErrorBody
	if err := json.Unmarshal([]byte(body), &b); err != nil || b.Error.Code == "" || b.Error.Message == "" {
		t.Fatalf("not a JSON error: %q (%v)", body, err)
	}
	return b.Error.Code
}

func TestRequestID(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name, in string
		keep     bool
	}{
		{"generated", "", false},
		{"accepted", "abc-123", true},
		{"too long replaced", strings.Repeat("x", 200), false},
		{"control characters replaced", "a b\n", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var hdr []string
			if c.in != "" {
				hdr = []string{HeaderRequestID, c.in}
			}
			got := e.do(t, "GET", "/healthz", "", "", hdr...).header.Get(HeaderRequestID)
			if c.keep && got != c.in {
				t.Fatalf("id %q, want %q", got, c.in)
			}
			if !c.keep && (len(got) != 32 || got == c.in) {
				t.Fatalf("generated id %q", got)
			}
		})
	}
	// The handler sees the same id in its context.
	var seen string
	e.srv.Handle("GET /echo", "", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = RequestID(r.Context()) }))
	if got := e.do(t, "GET", "/echo", "", "", HeaderRequestID, "rid-7"); seen != "rid-7" || got.header.Get(HeaderRequestID) != "rid-7" {
		t.Fatalf("context id %q", seen)
	}
}

func TestAccessLogNeverLogsAuthorization(t *testing.T) {
	e := newEnv(t)
	e.do(t, "GET", "/api/v1/runs?filter=secret-query", tokRead, "", HeaderRequestID, "rid-log")
	e.do(t, "GET", "/api/v1/runs", "wrong-"+tokRead, "")
	entries := e.logs.FilterMessage("request").All()
	if len(entries) != 2 {
		t.Fatalf("%d access log lines", len(entries))
	}
	for _, en := range e.logs.All() {
		line := fmt.Sprint(en.Message, en.ContextMap())
		for _, secret := range []string{tokRead, "secret-query", "Bearer"} {
			if strings.Contains(line, secret) {
				t.Fatalf("log line leaks %q: %s", secret, line)
			}
		}
	}
	m := entries[0].ContextMap()
	if m["route"] != "GET /api/v1/runs" || m["status"] != int64(200) || m["request_id"] != "rid-log" || m["principal"] != "reader" || m["path"] != "/api/v1/runs" {
		t.Fatalf("fields %v", m)
	}
	if m := entries[1].ContextMap(); m["status"] != int64(401) || m["principal"] != nil {
		t.Fatalf("unauthenticated fields %v", m)
	}
}

func TestPanicRecovery(t *testing.T) {
	e := newEnv(t)
	e.srv.Handle("GET /boom", "", http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("kaboom") }))
	r := e.do(t, "GET", "/boom", "", "")
	if r.code != 500 || errorCode(t, r.body) != "internal" || strings.Contains(r.body, "kaboom") {
		t.Fatalf("%d %s", r.code, r.body)
	}
	if e.logs.FilterMessage("handler panicked").Len() != 1 {
		t.Fatal("panic not logged")
	}
	if r := e.do(t, "GET", "/healthz", "", ""); r.code != 200 {
		t.Fatal("server unusable after a panic")
	}
}

func TestBodyLimit(t *testing.T) {
	e := newEnv(t)
	big := `{"job":"` + strings.Repeat("x", 100) + `"}`
	// Declared length over the limit: refused before the handler.
	if r := e.do(t, "POST", "/api/v1/runs", tokWrite, big); r.code != 413 || errorCode(t, r.body) != "too_large" {
		t.Fatalf("declared: %d %s", r.code, r.body)
	}
	// Unknown length (chunked): refused while reading.
	req := httptest.NewRequest("POST", "/api/v1/runs", io.MultiReader(strings.NewReader(big)))
	req.ContentLength = -1
	req.Header.Set("Authorization", "Bearer "+tokWrite)
	w := httptest.NewRecorder()
	e.srv.Handler().ServeHTTP(w, req)
	if w.Code != 413 {
		t.Fatalf("streamed: %d %s", w.Code, w.Body)
	}
	if len(e.trig.jobs) != 0 {
		t.Fatal("oversized request reached the trigger")
	}
	if r := e.do(t, "POST", "/api/v1/runs", tokWrite, `{"job":"small"}`); r.code != 202 {
		t.Fatalf("small body: %d %s", r.code, r.body)
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name, method, path, token, body string
		code                            int
		errCode                         string
	}{
		{"no token", "GET", "/api/v1/runs", "", "", 401, "unauthenticated"},
		{"unknown token", "GET", "/api/v1/runs", "nope", "", 401, "unauthenticated"},
		{"scim token on admin route", "GET", "/api/v1/runs", tokSCIM, "", 403, "forbidden"},
		{"read token cannot write", "POST", "/api/v1/runs", tokRead, `{"job":"a"}`, 403, "forbidden"},
		{"metrics without token", "GET", "/metrics", "", "", 401, "unauthenticated"},
		{"metrics with scim token", "GET", "/metrics", tokSCIM, "", 403, "forbidden"},
		{"read token reads", "GET", "/api/v1/runs", tokRead, "", 200, ""},
		{"write implies read", "GET", "/api/v1/runs", tokWrite, "", 200, ""},
		{"support writes", "POST", "/api/v1/runs", tokSupport, `{"job":"a"}`, 202, ""},
		{"health needs no token", "GET", "/healthz", "", "", 200, ""},
		{"readiness needs no token", "GET", "/readyz", "", "", 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(t, c.method, c.path, c.token, c.body)
			if r.code != c.code {
				t.Fatalf("%d %s", r.code, r.body)
			}
			if c.errCode != "" && errorCode(t, r.body) != c.errCode {
				t.Fatalf("body %s", r.body)
			}
			if c.code == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
	// A mounted handler gets the principal.
	var who auth.Principal
	e.srv.Handle("/scim/v2/", auth.ScopeSCIM, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { who, _ = auth.PrincipalFrom(r.Context()) }))
	if r := e.do(t, "GET", "/scim/v2/Users", tokSCIM, ""); r.code != 200 || who.Name != "entra" {
		t.Fatalf("mounted: %d %+v", r.code, who)
	}
	if r := e.do(t, "GET", "/scim/v2/Users", tokRead, ""); r.code != 403 {
		t.Fatalf("mounted wrong scope: %d", r.code)
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	e.do(t, "GET", "/healthz", "", "")
	e.do(t, "GET", "/healthz", "", "")
	e.do(t, "GET", "/no/such/9f1c2", "", "")
	e.srv.Metrics().ObserveRun("nightly", directory.RunFailed, 2*time.Second)
	r := e.do(t, "GET", "/metrics", tokRead, "")
	if r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	for _, want := range []string{
		`dirsyncd_http_requests_total{code="200",route="GET /healthz"} 2`,
		`dirsyncd_http_requests_total{code="404",route="unmatched"} 1`,
		`dirsyncd_http_request_duration_seconds_count{route="GET /healthz"} 2`,
		`dirsyncd_runs_total{job="nightly",status="failed"} 1`,
		`dirsyncd_run_duration_seconds_sum{job="nightly"} 2`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(r.body, "9f1c2") {
		t.Error("raw path in a metric label")
	}
}

func TestReadyz(t *testing.T) {
	e := newEnv(t)
	if r := e.do(t, "GET", "/readyz", "", ""); r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	r := e.do(t, "GET", "/readyz", "", "")
	if r.code != 503 || errorCode(t, r.body) != "not_ready" {
		t.Fatalf("closed store: %d %s", r.code, r.body)
	}
	if r := e.do(t, "GET", "/healthz", "", ""); r.code != 200 {
		t.Fatal("liveness must not depend on the store")
	}
}

func seedRuns(t *testing.T, st store.Store) (ids []string) {
	t.Helper()
	base := time.Date(2026, 11, 20, 2, 0, 0, 0, time.UTC)
	err := st.Update(context.Background(), audit.Meta{Actor: audit.ActorScheduler}, func(ctx context.Context, tx store.Tx) error {
		for i := range 3 {
			job := "ldap"
			if i == 1 {
				job = "cwa"
			}
			r := directory.Run{ID: fmt.Sprintf("00000000-0000-4000-8000-00000000000%d", i), Job: job, Trigger: "schedule",
				Status: directory.RunOK, StartedAt: base.Add(time.Duration(i) * time.Hour)}
			if err := tx.CreateRun(ctx, &r); err != nil {
				return err
			}
			ids = append(ids, r.ID)
		}
		var items []directory.RunItem
		for i := 1; i <= 5; i++ {
			items = append(items, directory.RunItem{RunID: ids[0], Seq: int64(i), Action: map[bool]string{true: "created", false: "gone"}[i%2 == 1],
				ObjectType: "user", ObjectID: fmt.Sprintf("u%d", i)})
		}
		return tx.AddRunItems(ctx, items)
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestRunsAPI(t *testing.T) {
	e := newEnv(t)
	ids := seedRuns(t, e.st)

	var list RunList
	r := e.do(t, "GET", "/api/v1/runs?limit=2", tokRead, "")
	if err := json.Unmarshal([]byte(r.body), &list); err != nil || r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	if len(list.Runs) != 2 || list.Runs[0].ID != ids[2] || list.Next == "" {
		t.Fatalf("first page %+v", list)
	}
	r = e.do(t, "GET", "/api/v1/runs?limit=2&before="+list.Next, tokRead, "")
	list = RunList{}
	_ = json.Unmarshal([]byte(r.body), &list)
	if len(list.Runs) != 1 || list.Runs[0].ID != ids[0] || list.Next != "" {
		t.Fatalf("second page %s", r.body)
	}
	r = e.do(t, "GET", "/api/v1/runs?job=cwa", tokRead, "")
	list = RunList{}
	_ = json.Unmarshal([]byte(r.body), &list)
	if len(list.Runs) != 1 || list.Runs[0].Job != "cwa" {
		t.Fatalf("by job %s", r.body)
	}

	var d RunDetail
	r = e.do(t, "GET", "/api/v1/runs/"+ids[0]+"?limit=2", tokRead, "")
	if err := json.Unmarshal([]byte(r.body), &d); err != nil || r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	if d.Run.ID != ids[0] || len(d.Items) != 2 || d.Items[0].Seq != 1 || d.NextAfter != 2 {
		t.Fatalf("detail %s", r.body)
	}
	d = RunDetail{}
	r = e.do(t, "GET", "/api/v1/runs/"+ids[0]+"?after=4&limit=2", tokRead, "")
	_ = json.Unmarshal([]byte(r.body), &d)
	if len(d.Items) != 1 || d.Items[0].Seq != 5 || d.NextAfter != 0 {
		t.Fatalf("last items page %s", r.body)
	}
	d = RunDetail{}
	r = e.do(t, "GET", "/api/v1/runs/"+ids[0]+"?action=gone", tokRead, "")
	_ = json.Unmarshal([]byte(r.body), &d)
	if len(d.Items) != 2 || d.Items[0].Action != "gone" {
		t.Fatalf("by action %s", r.body)
	}

	bad := []struct{ path, code string }{
		{"/api/v1/runs/00000000-0000-4000-8000-0000000000ff", "not_found"},
		{"/api/v1/runs?limit=0", "bad_request"},
		{"/api/v1/runs?before=yesterday", "bad_request"},
		{"/api/v1/runs?status=great", "bad_request"},
		{"/api/v1/runs/" + ids[0] + "?after=-1", "bad_request"},
	}
	for _, b := range bad {
		r := e.do(t, "GET", b.path, tokRead, "")
		if r.code < 400 || errorCode(t, r.body) != b.code {
			t.Errorf("%s: %d %s", b.path, r.code, r.body)
		}
	}
}

func TestTriggerAPI(t *testing.T) {
	e := newEnv(t)
	r := e.do(t, "POST", "/api/v1/runs", tokWrite, `{"job":"nightly"}`)
	if r.code != 202 || !strings.Contains(r.body, `"id": "run-1"`) || r.header.Get("Location") != "/api/v1/runs/run-1" {
		t.Fatalf("%d %s", r.code, r.body)
	}
	if len(e.trig.jobs) != 1 || e.trig.jobs[0] != "nightly" {
		t.Fatalf("trigger got %v", e.trig.jobs)
	}
	cases := []struct {
		body string
		err  error
		code int
		ec   string
	}{
		{`{"job":"x"}`, fmt.Errorf("scheduler: %w", ErrUnknownJob), 404, "unknown_job"},
		{`{"job":"x"}`, fmt.Errorf("scheduler: %w", ErrBusy), 409, "busy"},
		{`{"job":"x"}`, ErrUnavailable, 503, "unavailable"},
		{`{"job":"x"}`, errors.New("db down"), 500, "internal"},
		{`{}`, nil, 400, "bad_request"},
		{`{"job":"x","extra":1}`, nil, 400, "bad_request"},
		{`not json`, nil, 400, "bad_request"},
	}
	for _, c := range cases {
		e.trig.err = c.err
		r := e.do(t, "POST", "/api/v1/runs", tokWrite, c.body)
		if r.code != c.code || errorCode(t, r.body) != c.ec {
			t.Errorf("%s / %v: %d %s", c.body, c.err, r.code, r.body)
		}
		if c.code == 500 && strings.Contains(r.body, "db down") {
			t.Error("internal error leaked")
		}
	}
}

func TestUnknownRouteAndMethod(t *testing.T) {
	e := newEnv(t)
	if r := e.do(t, "GET", "/nope", "", ""); r.code != 404 || errorCode(t, r.body) != "not_found" {
		t.Fatalf("%d %s", r.code, r.body)
	}
	r := e.do(t, "DELETE", "/healthz", "", "")
	if r.code != 405 || errorCode(t, r.body) != "method_not_allowed" || !strings.Contains(r.header.Get("Allow"), "GET") {
		t.Fatalf("method: %d %s %v", r.code, r.body, r.header)
	}
}

func TestServeAndShutdown(t *testing.T) {
	e := newEnv(t)
	addrc := make(chan net.Addr, 1)
	e.srv.ready = func(a net.Addr) { addrc <- a }
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, ln) }()
	addr := <-addrc
	res, err := http.Get("http://" + addr.String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get(HeaderRequestID) == "" {
		t.Fatalf("%d", res.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := http.Get("http://" + addr.String() + "/healthz"); err == nil {
		t.Fatal("still serving after shutdown")
	}
}

func TestRateLimit(t *testing.T) {
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	v, err := auth.NewVerifier([]config.TokenConfig{
		{Name: "slow", Token: config.NewSecret("slow-token"), Scopes: []string{auth.ScopeAdminRead}, RateLimit: 1, Burst: 2},
		{Name: "free", Token: config.NewSecret("free-token"), Scopes: []string{auth.ScopeAdminRead}},
	})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	srv, err := New(Options{Store: openStore(t), Verifier: v, Now: func() time.Time { return now }, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{srv: srv}
	codes := func(tok string, n int) (out []int) {
		for range n {
			out = append(out, e.do(t, "GET", "/api/v1/runs", tok, "").code)
		}
		return out
	}
	if got := fmt.Sprint(codes("slow-token", 3)); got != "[200 200 429]" {
		t.Fatalf("burst of 2: %s", got)
	}
	r := e.do(t, "GET", "/api/v1/runs", "slow-token", "")
	if r.code != 429 || r.header.Get("Retry-After") != "1" || errorCode(t, r.body) != "rate_limited" {
		t.Fatalf("%d %v %s", r.code, r.header, r.body)
	}
	// Each 429 is logged as a refusal, without the token.
	if n := logs.FilterMessage("refused").FilterField(zap.Int("status", 429)).Len(); n != 2 {
		t.Fatalf("429 refusals logged: %d, want 2", n)
	}
	for _, l := range logs.All() {
		if b, _ := json.Marshal(l.ContextMap()); strings.Contains(string(b), "slow-token") {
			t.Fatalf("the token reached the log: %s", b)
		}
	}
	if got := fmt.Sprint(codes("free-token", 5)); got != "[200 200 200 200 200]" {
		t.Fatalf("unlimited token limited: %s", got)
	}
	now = now.Add(time.Second) // one token back
	if got := fmt.Sprint(codes("slow-token", 2)); got != "[200 429]" {
		t.Fatalf("after 1s: %s", got)
	}
}
