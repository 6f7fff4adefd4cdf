package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/store/sqlite"
)

// cwaDemo is a cwa section with the in-process fake serving the demo fixture.
const cwaDemo = `cwa:
  fake: {enabled: true, fixture: configs/demo/cwa.json}
  concurrency: 2
`

func TestSyncCWACommand(t *testing.T) {
	cfg, db := writeConfig(t, cwaDemo)
	if r := run(t, "migrate", "--config", cfg); r.code != 0 { // a dry run needs a migrated store
		t.Fatalf("migrate: %+v", r)
	}

	// Dry run: the plan, nothing written.
	r := run(t, "sync", "cwa", "--dry-run", "--config", cfg)
	if r.code != 0 {
		t.Fatalf("dry run: exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"dry run (nothing written)", "firms_created: 8", "offices_created: 11", "legacy_logins_created: 9",
		"created    firm          3856", "dropped    office        9X999X", "rejected   office        R51-1"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, r.stdout)
		}
	}
	st := openDB(t, db)
	if fs, err := st.ListFirms(context.Background()); err != nil || len(fs) != 0 {
		t.Fatalf("dry run wrote %d firms (%v)", len(fs), err)
	}
	_ = st.Close()

	// A real run, recorded as a run of job cwa.
	r = run(t, "sync", "cwa", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "status:  ok") || !strings.Contains(r.stdout, "firms_created: 8") {
		t.Fatalf("sync: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	st = openDB(t, db)
	f, err := st.GetFirm(context.Background(), "8101")
	if err != nil || f.ParentNumber != "7001" || !f.Enabled {
		t.Errorf("firm 8101 = %+v, %v", f, err)
	}
	runs, err := st.ListRuns(context.Background(), store.RunQuery{Job: "cwa", Limit: 5})
	if err != nil || len(runs) != 1 || runs[0].Counts["firms_created"] != 8 {
		t.Fatalf("runs %+v %v", runs, err)
	}
	its, err := st.ListRunItems(context.Background(), store.RunItemQuery{RunID: runs[0].ID, Action: "dropped", Limit: 10})
	if err != nil || len(its) != 1 || its[0].ObjectID != "9X999X" {
		t.Errorf("dropped items %+v %v", its, err)
	}
	_ = st.Close()

	// Again: nothing changes.
	r = run(t, "sync", "cwa", "--config", cfg)
	if r.code != 0 || strings.Contains(r.stdout, "created:") {
		t.Fatalf("repeat: exit %d\n%s", r.code, r.stdout)
	}

	// `sync` holds both features' commands.
	r = run(t, "sync", "--help")
	if !strings.Contains(r.stdout, "cwa") || !strings.Contains(r.stdout, "ldap") {
		t.Errorf("sync --help lists:\n%s", r.stdout)
	}
}

// TestDryRunNeedsMigratedSQLite: a dry run writes nothing, not even
// migrations: on a SQLite path that does not exist it fails (exit 1, naming
// the path and `dirsyncd migrate`) and creates neither the file nor its
// directory; on an existing but unmigrated file it fails listing the
// pending migrations and leaves them pending; after `migrate` it runs.
func TestDryRunNeedsMigratedSQLite(t *testing.T) {
	cfg, db := writeConfig(t, cwaDemo)
	for _, args := range [][]string{{"sync", "cwa", "--dry-run"}, {"reconcile", "--dry-run"}} {
		r := run(t, append(args, "--config", cfg)...)
		if r.code != exitFailure || !strings.Contains(r.stderr, db) || !strings.Contains(r.stderr, "does not exist") ||
			!strings.Contains(r.stderr, "run `dirsyncd migrate` first") {
			t.Fatalf("%v on a missing store: %+v", args, r)
		}
		if _, err := os.Stat(filepath.Dir(db)); !os.IsNotExist(err) {
			t.Fatalf("%v created the store directory %s (stat: %v)", args, filepath.Dir(db), err)
		}
	}

	// An existing file without the schema (opened, never migrated).
	if err := os.MkdirAll(filepath.Dir(db), 0o750); err != nil {
		t.Fatal(err)
	}
	pending := func() []string {
		t.Helper()
		st, err := sqlite.Open(context.Background(), db, sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		p, err := st.PendingMigrations(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	all := pending() // creates the empty file
	if len(all) == 0 {
		t.Fatal("a new file has no pending migrations")
	}
	r := run(t, "sync", "cwa", "--dry-run", "--config", cfg)
	if r.code != exitFailure || !strings.Contains(r.stderr, strings.Join(all, ", ")) || !strings.Contains(r.stderr, "run `dirsyncd migrate` first") {
		t.Fatalf("dry run on an unmigrated store: %+v", r)
	}
	if p := pending(); !slices.Equal(p, all) {
		t.Fatalf("after the refused dry run: pending %v, want still %v", p, all)
	}

	if r := run(t, "migrate", "--config", cfg); r.code != 0 {
		t.Fatalf("migrate: %+v", r)
	}
	if r := run(t, "sync", "cwa", "--dry-run", "--config", cfg); r.code != 0 || !strings.Contains(r.stdout, "dry run (nothing written)") {
		t.Fatalf("dry run after migrate: %+v", r)
	}
}

func TestSyncCWANotConfigured(t *testing.T) {
	cfg, _ := writeConfig(t, "")
	r := run(t, "sync", "cwa", "--config", cfg)
	if r.code != 2 || !strings.Contains(r.stderr, "CWA is not configured") {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
}

func TestCWAFakeOnlyInDevelopment(t *testing.T) {
	cfg, _ := writeConfig(t, cwaDemo)
	app := newApp(nil, nil)
	if err := app.loadConfig(cfg); err != nil {
		t.Fatal(err)
	}
	app.Config.Env = "production"
	if _, _, err := app.newCWAFake("127.0.0.1:0"); err == nil || !strings.Contains(err.Error(), "only allowed with env: development") {
		t.Fatalf("err %v", err)
	}
}

func openDB(t *testing.T, path string) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// TestSyncCWAMinFractionZero: after a good sync, an empty CWA snapshot is
// refused by the default shrink guard (run aborted, with a run item saying
// why, nothing disabled); with cwa.minFraction: 0 the guard is off and the
// same snapshot disables every firm.
func TestSyncCWAMinFractionZero(t *testing.T) {
	cfg, db := writeConfig(t, cwaDemo)
	if r := run(t, "sync", "cwa", "--config", cfg); r.code != 0 {
		t.Fatalf("first sync: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	doc, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "empty.json")
	if err := os.WriteFile(empty, []byte(`{"offices": [], "users": []}`), 0o600); err != nil {
		t.Fatal(err)
	}
	guarded := strings.Replace(string(doc), "configs/demo/cwa.json", empty, 1)
	if err := os.WriteFile(cfg, []byte(guarded), 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, "sync", "cwa", "--config", cfg)
	if r.code != 1 || !strings.Contains(r.stdout, "aborted") {
		t.Fatalf("guarded empty snapshot: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	st := openDB(t, db)
	ctx := context.Background()
	runs, err := st.ListRuns(ctx, store.RunQuery{Job: "cwa", Limit: 5})
	if err != nil || len(runs) != 2 {
		t.Fatalf("runs %+v %v", runs, err)
	}
	var aborted directory.Run
	for _, r := range runs {
		if r.Status == directory.RunAborted {
			aborted = r
		}
	}
	its, err := st.ListRunItems(ctx, store.RunItemQuery{RunID: aborted.ID, Limit: 10})
	if err != nil || len(its) != 1 || its[0].Action != "failed" || its[0].ObjectType != "run" ||
		!strings.Contains(its[0].Reason, "shrink guard") || !strings.Contains(its[0].Reason, "0 firms and 0 offices") {
		t.Fatalf("aborted run %s items %+v %v", aborted.ID, its, err)
	}
	if f, err := st.GetFirm(ctx, "3856"); err != nil || !f.Enabled {
		t.Fatalf("firm 3856 after the refused run: %+v %v", f, err)
	}
	_ = st.Close()

	off := strings.Replace(guarded, "  concurrency: 2\n", "  concurrency: 2\n  minFraction: 0\n", 1)
	if err := os.WriteFile(cfg, []byte(off), 0o600); err != nil {
		t.Fatal(err)
	}
	r = run(t, "sync", "cwa", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "firms_disabled: 8") {
		t.Fatalf("guard off: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	st = openDB(t, db)
	if f, err := st.GetFirm(ctx, "3856"); err != nil || f.Enabled {
		t.Errorf("firm 3856 with the guard off: %+v %v", f, err)
	}
}
