package scim

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	filter "github.com/scim2/filter-parser/v2"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/auth"
	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/internal/testenv"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/store/postgres"
	"github.com/dirsyncd/dirsyncd/store/sqlite"
)

// Tokens of the test clients.
const (
	tokEntra = "entra-secret-token"
	tokOkta  = "okta-secret-token"
	tokAuthk = "authentik-secret-token"
	tokAdmin = "admin-token"
	tokSlow  = "slow-token"
)

type storeKind string

const (
	kindSQLite   storeKind = "sqlite"
	kindPostgres storeKind = "postgres"
)

type testStore interface {
	store.Store
}

func openStore(t testing.TB, kind storeKind) testStore {
	t.Helper()
	ctx := context.Background()
	var st testStore
	var err error
	switch kind {
	case kindPostgres:
		st, err = postgres.Open(ctx, testenv.Postgres(t), postgres.Options{})
	default:
		st, err = sqlite.Open(ctx, filepath.Join(t.TempDir(), "scim.db"), sqlite.Options{})
	}
	if err != nil {
		t.Fatalf("open %s store: %v", kind, err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return st
}

type env struct {
	t   testing.TB
	st  testStore
	h   *Handler
	srv *httptest.Server
	enq *RecordingEnqueuer
	now time.Time
}

func testVerifier(t testing.TB) *auth.Verifier {
	v, err := auth.NewVerifier([]config.TokenConfig{
		{Name: "entra", Token: config.NewSecret(tokEntra), Scopes: []string{"scim"}},
		{Name: "okta", Token: config.NewSecret(tokOkta), Scopes: []string{"scim"}},
		{Name: "authentik", Token: config.NewSecret(tokAuthk), Scopes: []string{"scim"}},
		{Name: "ops", Token: config.NewSecret(tokAdmin), Scopes: []string{"admin:read"}},
		{Name: "slow", Token: config.NewSecret(tokSlow), Scopes: []string{"scim"}, RateLimit: 1, Burst: 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func newEnvOn(t testing.TB, kind storeKind) *env {
	t.Helper()
	e := &env{t: t, st: openStore(t, kind), enq: &RecordingEnqueuer{}, now: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}
	h, err := New(e.st, testVerifier(t), Options{BaseURL: "https://dirsyncd.test/scim/v2", Enqueuer: e.enq, Now: func() time.Time { return e.now }})
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	mux := http.NewServeMux()
	mux.Handle("/scim/v2/", http.StripPrefix("/scim/v2", h))
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

func newEnv(t testing.TB) *env { return newEnvOn(t, kindSQLite) }

type resp struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    []byte
}

// do sends a request as the entra client unless hdr sets Authorization.
func (e *env) do(method, path string, body any, hdr ...string) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	path = strings.NewReplacer(" ", "%20", `"`, "%22").Replace(path)
	req, err := http.NewRequest(method, e.srv.URL+"/scim/v2"+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tokEntra)
	req.Header.Set("Content-Type", "application/scim+json")
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := resp{Status: res.StatusCode, Header: res.Header, Raw: raw}
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &r.Body)
	}
	return r
}

func (e *env) must(r resp, status int) resp {
	e.t.Helper()
	if r.Status != status {
		e.t.Fatalf("status %d, want %d: %s", r.Status, status, r.Raw)
	}
	return r
}

func (e *env) createUser(userName string, extra map[string]any) string {
	e.t.Helper()
	body := map[string]any{"schemas": []string{URNUser}, "userName": userName, "active": true,
		"emails": []any{map[string]any{"value": userName, "type": "work", "primary": true}}}
	for k, v := range extra {
		body[k] = v
	}
	r := e.must(e.do("POST", "/Users", body), 201)
	return r.Body["id"].(string)
}

func (e *env) createGroup(name string, members ...string) string {
	e.t.Helper()
	ms := []any{}
	for _, m := range members {
		ms = append(ms, map[string]any{"value": m})
	}
	r := e.must(e.do("POST", "/Groups", map[string]any{"schemas": []string{URNGroup}, "displayName": name, "members": ms}), 201)
	return r.Body["id"].(string)
}

func patchBody(ops ...map[string]any) map[string]any {
	l := make([]any, len(ops))
	for i, o := range ops {
		l[i] = o
	}
	return map[string]any{"schemas": []string{URNPatchOp}, "Operations": l}
}

func get(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	return v
}

type auditEvent = audit.Event

type filterExpr = filter.Expression

// bothStores runs fn against the real SQLite store and the real
// PostgreSQL store (testenv.Postgres: skipped without a server, failing
// under CI).
func bothStores(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, newEnvOn(t, kindSQLite)) })
	t.Run("postgres", func(t *testing.T) { fn(t, newEnvOn(t, kindPostgres)) })
}

func storeAuditAll() store.AuditFilter { return store.AuditFilter{} }
