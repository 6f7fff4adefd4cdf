package ldapsync

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/internal/testenv"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/store/postgres"
	"github.com/dirsyncd/dirsyncd/store/sqlite"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// resetPeakRSS clears the kernel's peak-RSS mark for this process (Linux).
func resetPeakRSS() {
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// peakRSSMB reads VmHWM (peak resident set since the last reset).
func peakRSSMB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return -1
}

// BenchmarkLDAPSync measures, in one run against one slapd: the floor (an
// ldapsearch paged dump of the same entries to /dev/null), then per store
// a first full sync (everything created), a second full sync with no
// change (must write nothing), and an incremental sync after 100 changed
// entries, with the process's peak RSS per phase. Sizes come from
// DIRSYNCD_BENCH_LDAP_USERS / _GROUPS (scripts/bench-ldap.sh: 100,000 and
// 2,000; default here 2,000 and 40 so `make bench` stays short).
func BenchmarkLDAPSync(b *testing.B) {
	nUsers := envInt("DIRSYNCD_BENCH_LDAP_USERS", 2000)
	nGroups := envInt("DIRSYNCD_BENCH_LDAP_GROUPS", max(nUsers/50, 2))
	ldif := genDirectory(nUsers, nGroups, threeGroups(nGroups))
	memberships := strings.Count(ldif, "\nmember: uid=")
	s := testenv.Slapd(b, testenv.SlapdOptions{LDIF: ldif})
	ldif = ""
	b.Logf("directory: %d users, %d groups, %d user memberships", nUsers, nGroups, memberships)

	// The machine is shared: the floor is measured again right before each
	// full sync, and each full sync is compared with its own floor: the
	// median of three dumps (one dump moved by 0.6-1.0 s within a run).
	measureFloor := func(b *testing.B) time.Duration {
		var ds [3]time.Duration
		for i := range ds {
			t0 := time.Now()
			runFloor(b, s)
			ds[i] = time.Since(t0)
		}
		got := ds
		slices.Sort(ds[:])
		b.Logf("floor (ldapsearch paged dump, median of %v): %v", got, ds[1])
		return ds[1]
	}
	floor := measureFloor(b)
	b.ReportMetric(floor.Seconds(), "floor-s")

	backends := []struct {
		name string
		// open returns the store and its write floor (writefloor_bench_test.go).
		open func(b *testing.B) (Store, func(*testing.B) time.Duration)
	}{
		{"sqlite", func(b *testing.B) (Store, func(*testing.B) time.Duration) {
			path := b.TempDir() + "/bench.db"
			st, err := sqlite.Open(context.Background(), path, sqlite.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { st.Close() })
			if err := st.Migrate(context.Background()); err != nil {
				b.Fatal(err)
			}
			return st, func(b *testing.B) time.Duration { return sqliteWriteFloor(b, path) }
		}},
		{"postgres", func(b *testing.B) (Store, func(*testing.B) time.Duration) {
			dsn := testenv.Postgres(b)
			st, err := postgres.Open(context.Background(), dsn, postgres.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { st.Close() })
			if err := st.Migrate(context.Background()); err != nil {
				b.Fatal(err)
			}
			return st, func(b *testing.B) time.Duration { return postgresWriteFloor(b, dsn) }
		}},
	}
	round := 0
	// DIRSYNCD_BENCH_LDAP_STORES picks runs, comma-separated: sqlite,
	// postgres, cli-sqlite, cli-postgres; "" = all.
	only := os.Getenv("DIRSYNCD_BENCH_LDAP_STORES")
	pick := func(name string) bool {
		return only == "" || slices.Contains(strings.Split(only, ","), name)
	}
	for _, be := range backends {
		if !pick(be.name) {
			continue
		}
		b.Run(be.name, func(b *testing.B) {
			for range b.N {
				round++
				st, writeFloor := be.open(b)
				src := config.LDAPSource{Name: "bench", URL: s.URL(), BindDN: s.BindDN(), BindPassword: config.NewSecret(s.Password()),
					UserBaseDNs: []string{"ou=people," + suffix}, GroupBaseDNs: []string{"ou=groups," + suffix}}
				src.ApplyDefaults()
				syncer := New(src, st, Options{})
				var lastWall time.Duration // the latest phase's wall time
				phase := func(name string, ro RunOptions) *Result {
					if ro.Full {
						floor = measureFloor(b)
					}
					resetPeakRSS()
					// DIRSYNCD_BENCH_LDAP_CPUPROFILE=FILE writes a CPU profile of
					// the no-change full sync (FILE.<store>), or of the phase
					// DIRSYNCD_BENCH_LDAP_PROFILE_PHASE names (full-first, ...).
					var prof *os.File
					want := cmp.Or(os.Getenv("DIRSYNCD_BENCH_LDAP_PROFILE_PHASE"), "full-nochange")
					if path := os.Getenv("DIRSYNCD_BENCH_LDAP_CPUPROFILE"); path != "" && name == want {
						var err error
						if prof, err = os.Create(path + "." + be.name); err != nil {
							b.Fatal(err)
						}
						if err := pprof.StartCPUProfile(prof); err != nil {
							b.Fatal(err)
						}
					}
					t0 := time.Now()
					res, err := syncer.Run(context.Background(), ro)
					d := time.Since(t0)
					lastWall = d
					if prof != nil {
						pprof.StopCPUProfile()
						prof.Close()
					}
					if err != nil {
						b.Fatalf("%s: %v", name, err)
					}
					rss := peakRSSMB()
					b.Logf("%s %s: %v (%.2f× floor), peak RSS %.0f MB, counts %v", be.name, name, d, d.Seconds()/floor.Seconds(), rss, res.Counts)
					b.ReportMetric(d.Seconds(), name+"-s")
					b.ReportMetric(rss, name+"-peak-MB")
					return res
				}
				phase("full-first", RunOptions{Full: true})
				firstWall := lastWall
				// The store's write floor for the same rows (DIRSYNCD_BENCH_LDAP_WRITE_FLOOR=0 skips it).
				if os.Getenv("DIRSYNCD_BENCH_LDAP_WRITE_FLOOR") != "0" {
					wf := writeFloor(b)
					b.Logf("%s write floor (the first full sync's rows, engine bulk copy): %v; first full sync %.2f× it",
						be.name, wf, firstWall.Seconds()/wf.Seconds())
					b.ReportMetric(wf.Seconds(), "write-floor-s")
				}
				res := phase("full-nochange", RunOptions{Full: true})
				writes := 0
				if as, ok := st.(interface {
					Audit(context.Context, store.AuditFilter, func(audit.Event) error) error
				}); ok {
					_ = as.Audit(context.Background(), store.AuditFilter{Actor: "ldap:bench"}, func(ev audit.Event) error {
						if ev.RunID == res.RunID && ev.ObjectType != "run" {
							writes++
						}
						return nil
					})
				}
				b.ReportMetric(float64(writes), "nochange-writes")
				if writes != 0 {
					b.Errorf("no-change full sync wrote %d audit events", writes)
				}
				// The first full sync after an upgrade: no fingerprints yet
				// (every user and group compared with the store, then the
				// fingerprints written; still no domain change).
				if raw, ok := st.(interface {
					TestingExecRaw(ctx context.Context, q string) error
				}); ok {
					for _, q := range []string{"DELETE FROM sync_fingerprints", "DELETE FROM sync_group_fingerprints", "DELETE FROM sync_snapshots"} {
						if err := raw.TestingExecRaw(context.Background(), q); err != nil {
							b.Fatal(err)
						}
					}
					up := phase("full-nofingerprints", RunOptions{Full: true})
					if up.Counts["created"]+up.Counts["updated"]+up.Counts["gone"]+up.Counts["members_added"]+up.Counts["members_removed"] != 0 {
						b.Errorf("full sync without fingerprints changed something: %v", up.Counts)
					}
					phase("full-nochange-again", RunOptions{Full: true})
				}
				// 100 changed entries, then an incremental run.
				var mods strings.Builder
				for i := range 100 {
					u := (i*997 + round) % nUsers
					fmt.Fprintf(&mods, "dn: uid=u%06d,ou=people,%s\nchangetype: modify\nreplace: mail\nmail: changed%d.u%06d@firm.example\n\n", u, suffix, round, u)
				}
				s.Modify(mods.String())
				inc := phase("incremental", RunOptions{})
				if inc.Mode != ModeIncremental || inc.Counts["updated"] != 100 {
					b.Errorf("incremental: mode %s counts %v", inc.Mode, inc.Counts)
				}
			}
		})
	}

	// The same phases through the dirsyncd binary (DIRSYNCD_BENCH_BIN), one
	// process per run under /usr/bin/time -v: its peak RSS is the whole
	// daemon's, with nothing left over from earlier phases.
	bin := os.Getenv("DIRSYNCD_BENCH_BIN")
	for _, drv := range []string{"sqlite", "postgres"} {
		if bin == "" || !pick("cli-"+drv) {
			continue
		}
		b.Run("cli-"+drv, func(b *testing.B) {
			for range b.N {
				round++
				dir := b.TempDir()
				storeCfg := fmt.Sprintf("{driver: sqlite, path: %s/bench.db}", dir)
				env := append(os.Environ(), "DIRSYNCD_BENCH_LDAP_PW="+s.Password())
				if drv == "postgres" {
					storeCfg = "{driver: postgres, dsn: env:DIRSYNCD_BENCH_PG_DSN}"
					env = append(env, "DIRSYNCD_BENCH_PG_DSN="+testenv.Postgres(b))
				}
				cfg := dir + "/dirsyncd.yaml"
				doc := fmt.Sprintf(`env: development
log: {level: warn}
store: %s
ldap:
  sources:
    - name: bench
      url: %s
      bindDN: %s
      bindPassword: env:DIRSYNCD_BENCH_LDAP_PW
      userBaseDNs: ["ou=people,%s"]
      groupBaseDNs: ["ou=groups,%s"]
`, storeCfg, s.URL(), s.BindDN(), suffix, suffix)
				if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
					b.Fatal(err)
				}
				cli := func(name string, args ...string) string {
					if strings.HasPrefix(name, "full") {
						floor = measureFloor(b)
					}
					cmd := exec.Command("/usr/bin/time", append([]string{"-v", bin}, append(args, "--config", cfg)...)...)
					cmd.Env = env
					t0 := time.Now()
					out, err := cmd.CombinedOutput()
					d := time.Since(t0)
					if err != nil {
						b.Fatalf("%s: %v\n%s", name, err, out)
					}
					rss, cpu := -1.0, 0.0
					for _, line := range strings.Split(string(out), "\n") {
						line = strings.TrimSpace(line)
						if v, ok := strings.CutPrefix(line, "Maximum resident set size (kbytes):"); ok {
							kb, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
							rss = kb / 1024
						}
						for _, p := range []string{"User time (seconds):", "System time (seconds):"} {
							if v, ok := strings.CutPrefix(line, p); ok {
								s, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
								cpu += s
							}
						}
					}
					if name != "migrate" {
						b.Logf("cli %s %s: %v (%.2f× floor), peak RSS %.0f MB, CPU (user+sys) %.2f s", drv, name, d,
							d.Seconds()/floor.Seconds(), rss, cpu)
						b.ReportMetric(d.Seconds(), name+"-s")
						b.ReportMetric(rss, name+"-peak-MB")
					}
					return string(out)
				}
				cli("migrate", "migrate")
				cli("full-first", "sync", "ldap", "--full")
				// Two no-change runs: two samples of the scheduled case per run.
				for _, name := range []string{"full-nochange", "full-nochange-again"} {
					out := cli(name, "sync", "ldap", "--full")
					if strings.Contains(out, "created:") || strings.Contains(out, "updated:") || strings.Contains(out, "gone:") {
						b.Errorf("%s: the no-change full sync changed something:\n%s", name, out)
					}
				}
				var mods strings.Builder
				for i := range 100 {
					u := (i*991 + round*7) % nUsers
					fmt.Fprintf(&mods, "dn: uid=u%06d,ou=people,%s\nchangetype: modify\nreplace: mail\nmail: cli%d.u%06d@firm.example\n\n", u, suffix, round, u)
				}
				s.Modify(mods.String())
				out := cli("incremental", "sync", "ldap")
				if !strings.Contains(out, "mode:    incremental") || !strings.Contains(out, "updated: 100") {
					b.Errorf("incremental:\n%s", out)
				}
			}
		})
	}
}

// The floor: ldapsearch's paged dump of every user and group to /dev/null.
const floorFilter = "(|(objectClass=inetOrgPerson)(objectClass=groupOfNames))"

var floorAttrs = []string{"*", "entryUUID", "modifyTimestamp"}

// runFloor runs the floor's ldapsearch against s.
func runFloor(b *testing.B, s *testenv.SlapdServer) {
	b.Helper()
	cmd := fmt.Sprintf("ldapsearch -x -LLL -H %s -D %s -w %s -b %s -E pr=1000/noprompt '%s' %s > /dev/null",
		s.URL(), s.BindDN(), s.Password(), suffix, floorFilter, "'"+strings.Join(floorAttrs, "' '")+"'")
	if out, err := exec.Command("sh", "-c", cmd).CombinedOutput(); err != nil {
		b.Fatalf("floor: %v\n%s", err, out)
	}
}
