package reconcile

import (
	"context"
	"testing"

	"github.com/dirsyncd/dirsyncd/mapping"
)

// TestRunReportsConflicts: a role refused for a conflict is reported by full
// and event runs (and counted in the run record), not silently dropped.
func TestRunReportsConflicts(t *testing.T) {
	s := openSQLite(t)
	ctx := context.Background()
	sd := newSeed(t, s)
	cat, err := mapping.ParseCatalogue([]byte(`
services:
  - slug: casework
    roles:
      - slug: supervisor
      - slug: auditor
        conflicts: [supervisor]
`))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := mapping.ParseRules([]byte(`
rules:
  - name: supervisors
    match: {groups: [{name: LAA CCMS Supervisors}]}
    grants: [{role: casework/supervisor}]
  - name: auditors
    match: {groups: [{name: LAA Crime}]}
    grants: [{role: casework/auditor}]
`), cat)
	if err != nil {
		t.Fatal(err)
	}
	u := sd.user(t, "gina@smith.example", "3856", "", "LAA CCMS Supervisors", "LAA Crime")
	r := New(s, mapping.NewEngine(cat, rs), Options{})
	rep, err := r.Full(ctx, RunOptions{Trigger: "manual"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.ConflictCount != 1 || len(rep.Conflicts) != 1 {
		t.Fatalf("conflicts %d %+v", rep.ConflictCount, rep.Conflicts)
	}
	c := rep.Conflicts[0]
	if c.UserID != u || c.Role != "casework/auditor" || c.With != "casework/supervisor" || c.Rule != "auditors" || c.WithBy != "rule supervisors" {
		t.Errorf("conflict %+v", c)
	}
	if g := grantsOf(t, s, u); len(g) != 1 {
		t.Errorf("grants %v: only the earlier rule's role", g)
	}
	run, err := s.GetRun(ctx, rep.RunID)
	if err != nil || run.Counts["conflicts"] != 1 {
		t.Errorf("run counts %v %v", run.Counts, err)
	}
	ev, err := r.Users(ctx, []string{u}, RunOptions{DryRun: true})
	if err != nil || ev.ConflictCount != 1 {
		t.Errorf("event run conflicts %+v %v", ev, err)
	}
}
