package storetest

import (
	"context"
	"fmt"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchUsers returns n distinct users like a directory sync produces.
func BenchUsers(prefix string, n int) []*directory.User {
	us := make([]*directory.User, n)
	for i := range us {
		name := fmt.Sprintf("%s%07d", prefix, i)
		us[i] = &directory.User{
			UserName: name, Email: name + "@firm.example", ExternalID: "ext-" + name,
			GivenName: "Given" + name, FamilyName: "Family", DisplayName: "Given Family " + name,
			Active: true, UserType: "Employee", FirmNumber: fmt.Sprint(1000 + i%500),
			Emails: []directory.Email{{Value: name + "@firm.example", Type: "work", Primary: true}},
			Attrs:  []byte(`{"department":"Legal","employeeNumber":"` + fmt.Sprint(i) + `"}`),
		}
	}
	return us
}

// BenchUpsertUsers bulk-loads n users per iteration through UpsertUsers in
// transactions of batch users (newStore gives an empty, migrated store) and
// reports users/s; it checks the audit chain afterwards.
func BenchUpsertUsers(b *testing.B, newStore func(b *testing.B) store.Store, n, batch int) {
	ctx := context.Background()
	var total, cpu time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s := newStore(b)
		users := BenchUsers("u", n)
		b.StartTimer()
		start, cpu0 := time.Now(), processCPU()
		for off := 0; off < n; off += batch {
			chunk := users[off:min(off+batch, n)]
			err := s.Update(ctx, audit.Meta{Actor: "ldap:bench", RunID: "bench"}, func(ctx context.Context, tx store.Tx) error {
				c, _, err := tx.UpsertUsers(ctx, chunk)
				if err == nil && c != len(chunk) {
					err = fmt.Errorf("created %d of %d", c, len(chunk))
				}
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		total += time.Since(start)
		cpu += processCPU() - cpu0
		b.StopTimer()
		v, err := s.VerifyAudit(ctx)
		if err != nil || !v.OK() || v.Checked != int64(n) {
			b.Fatalf("audit after bulk load: checked %d, problems %v, err %v", v.Checked, v.Problems, err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "users/s")
	// The machine is shared: users per CPU-second of this process (user +
	// system; the PostgreSQL server's own CPU is not included) is the
	// figure that does not depend on other load.
	b.ReportMetric(float64(n*b.N)/cpu.Seconds(), "users/cpu-s")
}

// BenchCreateUser measures single CreateUser transactions (with their audit
// event) and reports the median latency.
func BenchCreateUser(b *testing.B, s store.Store) {
	ctx := context.Background()
	// Warm up with some data so indexes are not empty.
	users := BenchUsers("warm", 1000)
	if err := s.Update(ctx, audit.Meta{Actor: "bench"}, func(ctx context.Context, tx store.Tx) error {
		_, _, err := tx.UpsertUsers(ctx, users)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	n := max(b.N, 200)
	one := BenchUsers("single", n)
	lat := make([]time.Duration, 0, n)
	b.ResetTimer()
	for i := 0; i < n; i++ {
		start := time.Now()
		err := s.Update(ctx, audit.Meta{Actor: "scim:bench", RequestID: "r"}, func(ctx context.Context, tx store.Tx) error {
			return tx.CreateUser(ctx, one[i])
		})
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
