package server

import (
	"net/http/httptest"
	"testing"
)

// BenchmarkMiddleware measures a request through the whole chain (request
// id, access log to an in-memory observer, recovery, metrics, body limit)
// for the public /healthz and for an authenticated GET /api/v1/runs on an
// empty SQLite store (token check included).
func BenchmarkMiddleware(b *testing.B) {
	for _, c := range []struct{ name, path, token string }{
		{"healthz", "/healthz", ""},
		{"runs_authenticated", "/api/v1/runs?limit=1", tokRead},
	} {
		b.Run(c.name, func(b *testing.B) {
			e := newEnv(b)
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest("GET", c.path, nil)
				if c.token != "" {
					r.Header.Set("Authorization", "Bearer "+c.token)
				}
				w := httptest.NewRecorder()
				e.srv.Handler().ServeHTTP(w, r)
				if w.Code != 200 {
					b.Fatalf("%d", w.Code)
				}
			}
		})
	}
}
