package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dirsyncd/dirsyncd/internal/testenv"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/store/postgres"
	"github.com/dirsyncd/dirsyncd/webauth"
)

// BenchmarkReportPages measures the first page of the runs list and of a
// run with 100,000 items (HTML page with a session, and the JSON API with
// a token), on SQLite and on PostgreSQL (the test cluster of
// scripts/test-env.sh). Target: each under 200 ms.
func BenchmarkReportPages(b *testing.B) {
	backends := []struct {
		name string
		open func(b *testing.B) store.Store
	}{
		{"sqlite", func(b *testing.B) store.Store { return openStore(b) }},
		{"postgres", func(b *testing.B) store.Store {
			st, err := postgres.Open(context.Background(), testenv.Postgres(b), postgres.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { st.Close() })
			if err := st.Migrate(context.Background()); err != nil {
				b.Fatal(err)
			}
			return st
		}},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			e := newAdminEnv(b, adminEnvOptions{runItems: 100_000, store: be.open(b)})
			cookie, err := e.srv.adm.cookies.newSession(webauth.Identity{Claim: "ops@agency.example", Support: true})
			if err != nil {
				b.Fatal(err)
			}
			for _, c := range []struct{ name, path, want string }{
				{"ui_runs_list", "/ui/runs", "run-held"},
				{"ui_run_100k_first_page", "/ui/runs/run-ldap", `id="next"`},
				{"ui_run_100k_filtered", "/ui/runs/run-ldap?action=failed", `id="next"`},
				{"ui_run_100k_filter_no_match", "/ui/runs/run-ldap?action=disputed", "No items."},
				{"ui_run_100k_deep_page", "/ui/runs/run-ldap?after=99000", `id="next"`},
				{"api_runs_list", "/api/v1/runs", "run-held"},
				{"api_run_100k_first_page", "/api/v1/runs/run-ldap", "nextAfter"},
			} {
				b.Run(c.name, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						r := httptest.NewRequest("GET", c.path, nil)
						if strings.HasPrefix(c.path, "/api/") {
							r.Header.Set("Authorization", "Bearer "+tokSupport)
						} else {
							r.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
						}
						w := httptest.NewRecorder()
						e.srv.Handler().ServeHTTP(w, r)
						if w.Code != 200 || !strings.Contains(w.Body.String(), c.want) {
							b.Fatalf("%s: %d", c.path, w.Code)
						}
					}
				})
			}
		})
	}
}
