package scim

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/store/sqlite"
)

// benchData is a SQLite directory of n users (user<i>@bench.example,
// externalId ext-<i>) and, when members > 0, one SCIM group holding the
// first `members` users. It is built once per size and process.
type benchData struct {
	st    store.Store
	h     *Handler
	ids   []string
	group string
}

var (
	benchMu    sync.Mutex
	benchCache = map[string]*benchData{}
	benchDirs  []string
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range benchDirs {
		_ = os.RemoveAll(d)
	}
	os.Exit(code)
}

func benchSetup(b *testing.B, n, members int) *benchData {
	b.Helper()
	key := fmt.Sprintf("%d/%d", n, members)
	benchMu.Lock()
	defer benchMu.Unlock()
	if d, ok := benchCache[key]; ok {
		return d
	}
	dir, err := os.MkdirTemp("", "scim-bench-")
	if err != nil {
		b.Fatal(err)
	}
	benchDirs = append(benchDirs, dir)
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "bench.db"), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	const batch = 5000
	for i := 0; i < n; i += batch {
		var us []*directory.User
		for j := i; j < min(i+batch, n); j++ {
			name := fmt.Sprintf("user%d@bench.example", j)
			us = append(us, &directory.User{UserName: name, ExternalID: fmt.Sprintf("ext-%d", j), Email: name, Active: true,
				Emails: []directory.Email{{Value: name, Type: "work", Primary: true}}, GivenName: "Bench", FamilyName: fmt.Sprint(j)})
		}
		if err := st.Update(ctx, audit.Meta{Actor: "bench"}, func(ctx context.Context, tx store.Tx) error {
			_, _, err := tx.UpsertUsers(ctx, us)
			return err
		}); err != nil {
			b.Fatal(err)
		}
	}
	d := &benchData{st: st}
	page, err := st.ListUsers(ctx, store.UserQuery{Limit: -1})
	if err != nil {
		b.Fatal(err)
	}
	for _, u := range page.Items {
		d.ids = append(d.ids, u.ID)
	}
	if members > 0 {
		g := directory.Group{Source: "scim:entra", DisplayName: "Everyone"}
		if err := st.Update(ctx, audit.Meta{Actor: "bench"}, func(ctx context.Context, tx store.Tx) error {
			if err := tx.CreateGroup(ctx, &g); err != nil {
				return err
			}
			return tx.AddMembers(ctx, g.ID, d.ids[:members])
		}); err != nil {
			b.Fatal(err)
		}
		d.group = g.ID
	}
	d.h, err = New(st, testVerifier(b), Options{BaseURL: "https://dirsyncd.test/scim/v2"})
	if err != nil {
		b.Fatal(err)
	}
	benchCache[key] = d
	return d
}

func (d *benchData) serve(b *testing.B, method, target, body string, want int) {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tokEntra)
	rec := httptest.NewRecorder()
	d.h.ServeHTTP(rec, req)
	if rec.Code != want {
		b.Fatalf("%s %s: %d %s", method, target, rec.Code, rec.Body.String())
	}
}

// BenchmarkLookup: GET /Users?filter=userName eq "…" (and externalId) with
// 1k and 100k users; the store's indexes keep both sizes alike.
func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		for _, attr := range []string{"userName", "externalId"} {
			b.Run(fmt.Sprintf("%s/users=%d", attr, n), func(b *testing.B) {
				d := benchSetup(b, n, 0)
				b.ResetTimer()
				defer reportCPU(b)()
				for i := 0; i < b.N; i++ {
					j := (i * 7919) % n
					v := fmt.Sprintf("user%d@bench.example", j)
					if attr == "externalId" {
						v = fmt.Sprintf("ext-%d", j)
					}
					d.serve(b, "GET", "/Users?filter="+url.QueryEscape(attr+` eq "`+v+`"`), "", http.StatusOK)
				}
			})
		}
	}
}

// BenchmarkGroupMember100k: PATCH one member in, then out, of a group of
// 100,000 members (two requests per op; ms/op is both together).
func BenchmarkGroupMember100k(b *testing.B) {
	const n = 100000
	d := benchSetup(b, n+1000, n)
	b.ResetTimer()
	defer reportCPU(b)()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		id := d.ids[n+i%1000]
		d.serve(b, "PATCH", "/Groups/"+d.group, `{"schemas":["`+URNPatchOp+`"],"Operations":[{"op":"add","path":"members","value":[{"value":"`+id+`"}]}]}`, http.StatusNoContent)
		d.serve(b, "PATCH", "/Groups/"+d.group, `{"schemas":["`+URNPatchOp+`"],"Operations":[{"op":"remove","path":"members[value eq \"`+id+`\"]"}]}`, http.StatusNoContent)
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/float64(2*b.N)/1000, "ms/request")
}

// reportCPU reports the process's CPU time per op ("cpu-ms/op") when the
// returned function runs: on a machine shared with other work, wall time
// per op grows with the load average, CPU time per op much less.
func reportCPU(b *testing.B) func() {
	start := processCPU()
	return func() {
		b.ReportMetric(float64((processCPU()-start).Microseconds())/1000/float64(b.N), "cpu-ms/op")
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
