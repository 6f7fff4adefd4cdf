package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/dirsyncd/dirsyncd/internal/testenv"
	"github.com/dirsyncd/dirsyncd/store"
)

func TestSyncLDAPCommandAndJobs(t *testing.T) {
	ldif, err := os.ReadFile("../../ldapsync/testdata/base.ldif")
	if err != nil {
		t.Fatal(err)
	}
	s := testenv.Slapd(t, testenv.SlapdOptions{LDIF: string(ldif)})
	t.Setenv("DIRSYNCD_TEST_LDAP_PW", s.Password())
	cfg, db := writeConfig(t, fmt.Sprintf(`    - {name: ldap-full, kind: ldap-full, params: {source: corp}}
    - {name: ldap-incr, kind: ldap-incremental, params: {source: corp}}
ldap:
  sources:
    - name: corp
      url: %s
      bindDN: %s
      bindPassword: env:DIRSYNCD_TEST_LDAP_PW
      userBaseDNs: ["ou=people,dc=example,dc=org"]
      groupBaseDNs: ["ou=groups,dc=example,dc=org"]
`, s.URL(), s.BindDN()))
	if r := run(t, "migrate", "--config", cfg); r.code != 0 {
		t.Fatalf("migrate: %+v", r)
	}
	r := run(t, "sync", "ldap", "--dry-run", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "dry run (nothing written)") || !strings.Contains(r.stdout, "new user alice") ||
		!strings.Contains(r.stdout, "created: 5") {
		t.Fatalf("dry run: %+v", r)
	}
	if strings.Contains(r.stdout+r.stderr, s.Password()) {
		t.Fatal("the bind password reached the output")
	}
	st := openTestStore(t, db)
	if ls, _ := st.ListLinks(context.Background(), "ldap:corp", "", 10); len(ls) != 0 {
		t.Fatalf("dry run wrote links %v", ls)
	}
	st.Close()

	r = run(t, "sync", "ldap", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "mode:    full") || !strings.Contains(r.stdout, "created: 5") {
		t.Fatalf("sync: %+v", r)
	}
	if r := run(t, "sync", "ldap", "--source", "nope", "--config", cfg); r.code != 2 || !strings.Contains(r.stderr, `no source "nope"`) {
		t.Fatalf("unknown source: %+v", r)
	}
	// Scheduled job kinds, run by hand through the scheduler.
	r = run(t, "run", "ldap-incr", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "status:  ok") || !strings.Contains(r.stdout, "users_seen:") {
		t.Fatalf("ldap-incremental job: %+v", r)
	}
	r = run(t, "run", "ldap-full", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "unchanged: 5") {
		t.Fatalf("ldap-full job: %+v", r)
	}
	st = openTestStore(t, db)
	defer st.Close()
	runs, err := st.ListRuns(context.Background(), store.RunQuery{Job: "ldap-full", Limit: 5})
	if err != nil || len(runs) != 1 || runs[0].Counts["unchanged"] != 5 {
		t.Fatalf("ldap-full run record: %+v %v", runs, err)
	}
	s.Stop()
	if r := run(t, "run", "ldap-full", "--config", cfg); r.code != 1 || !strings.Contains(r.stdout, "status:  failed") {
		t.Fatalf("ldap-full with slapd down: %+v", r)
	}
}
