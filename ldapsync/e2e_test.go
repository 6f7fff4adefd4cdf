package ldapsync

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/internal/testenv"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/store/sqlite"
)

const suffix = "dc=example,dc=org"

type testStore interface {
	Store
	Audit(ctx context.Context, f store.AuditFilter, fn func(audit.Event) error) error
	ListRunItems(ctx context.Context, q store.RunItemQuery) ([]directory.RunItem, error)
	ListLinks(ctx context.Context, source string, after string, limit int) ([]directory.SourceLink, error)
	GetRun(ctx context.Context, id string) (directory.Run, error)
	ListRuns(ctx context.Context, q store.RunQuery) ([]directory.Run, error)
	CountGroupMembers(ctx context.Context, groupID string) (int64, error)
	ListGroupChildren(ctx context.Context, groupID string) ([]string, error)
	FindGroupBySourceKey(ctx context.Context, source, key string) (directory.Group, error)
	Migrate(ctx context.Context) error
	Close() error
}

type env struct {
	t       *testing.T
	ldap    *testenv.SlapdServer
	st      testStore
	src     config.LDAPSource
	now     time.Time
	hook    func(kind string, page int)
	timeout time.Duration // per run, default 60s
}

func openSQLite(t *testing.T) testStore {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "dirsyncd.db"), sqlite.Options{})
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return st
}

func fixture(t *testing.T) string {
	b, err := os.ReadFile("testdata/base.ldif")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func newEnv(t *testing.T, opts testenv.SlapdOptions, st testStore) *env {
	t.Helper()
	if opts.LDIF == "" {
		opts.LDIF = fixture(t)
	}
	s := testenv.Slapd(t, opts)
	if st == nil {
		st = openSQLite(t)
	}
	src := config.LDAPSource{
		Name: "corp", URL: s.URL(), BindDN: s.BindDN(), BindPassword: config.NewSecret(s.Password()),
		UserBaseDNs: []string{"ou=people," + suffix}, GroupBaseDNs: []string{"ou=groups," + suffix},
		PageSize: 2, BatchSize: 2, RequestTimeout: 10 * time.Second, DialTimeout: 5 * time.Second,
	}
	src.ApplyDefaults()
	return &env{t: t, ldap: s, st: st, src: src, now: time.Date(2026, 11, 23, 1, 0, 0, 0, time.UTC)}
}

func (e *env) run(ro RunOptions) (*Result, error) {
	e.t.Helper()
	if e.timeout == 0 {
		e.timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	s := New(e.src, e.st, Options{Now: func() time.Time { return e.now }, afterPage: e.hook})
	return s.Run(ctx, ro)
}

func (e *env) mustRun(ro RunOptions) *Result {
	e.t.Helper()
	res, err := e.run(ro)
	if err != nil {
		e.t.Fatalf("sync: %v", err)
	}
	if res.Status != directory.RunOK {
		e.t.Fatalf("status %s", res.Status)
	}
	return res
}

func (e *env) user(name string) directory.User {
	e.t.Helper()
	u, err := e.st.GetUserByUserName(context.Background(), name)
	if err != nil {
		e.t.Fatalf("user %s: %v", name, err)
	}
	return u
}

func (e *env) link(userID string) directory.SourceLink {
	e.t.Helper()
	ls, err := e.st.ListUserLinks(context.Background(), userID)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, l := range ls {
		if l.Source == "ldap:corp" {
			return l
		}
	}
	e.t.Fatalf("user %s has no ldap:corp link", userID)
	return directory.SourceLink{}
}

func (e *env) links() (live, gone int) {
	e.t.Helper()
	ls, err := e.st.ListLinks(context.Background(), "ldap:corp", "", 100000)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, l := range ls {
		if l.GoneAt != nil {
			gone++
		} else {
			live++
		}
	}
	return live, gone
}

// domainEvents counts audit events by the source that are not run bookkeeping.
func (e *env) domainEvents(runID string) int {
	e.t.Helper()
	n := 0
	err := e.st.Audit(context.Background(), store.AuditFilter{Actor: "ldap:corp"}, func(ev audit.Event) error {
		if ev.ObjectType != "run" && ev.ObjectType != "cursor" && (runID == "" || ev.RunID == runID) {
			n++
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) groupMembers(name string) []string {
	e.t.Helper()
	ctx := context.Background()
	p, err := e.st.ListGroups(ctx, store.GroupQuery{Filter: store.Cmp{Field: "displayName", Op: store.OpEq, Value: name}, Limit: 10})
	if err != nil || len(p.Items) != 1 {
		e.t.Fatalf("group %s: %v (%d found)", name, err, len(p.Items))
	}
	ids, err := e.st.ListGroupMembers(ctx, p.Items[0].ID, "", 100000)
	if err != nil {
		e.t.Fatal(err)
	}
	var names []string
	for _, id := range ids {
		u, err := e.st.GetUser(ctx, id)
		if err != nil {
			e.t.Fatal(err)
		}
		names = append(names, u.UserName)
	}
	slices.Sort(names)
	return names
}

func (e *env) items(runID, action string) []directory.RunItem {
	e.t.Helper()
	its, err := e.st.ListRunItems(context.Background(), store.RunItemQuery{RunID: runID, Action: action, Limit: 100000})
	if err != nil {
		e.t.Fatal(err)
	}
	return its
}

// assertNothingGone proves a failed run removed nothing.
func (e *env) assertNothingGone(wantLive int) {
	e.t.Helper()
	live, gone := e.links()
	if gone != 0 || live != wantLive {
		e.t.Fatalf("links live=%d gone=%d, want live=%d gone=0", live, gone, wantLive)
	}
	if got := e.groupMembers("solo"); !slices.Equal(got, []string{"erin"}) {
		e.t.Fatalf("solo members = %v after failed run", got)
	}
}

func TestFullSyncOpenLDAP(t *testing.T) {
	testFullSync(t, nil)
}

func testFullSync(t *testing.T, st testStore) {
	e := newEnv(t, testenv.SlapdOptions{Overlays: []string{"refint"}}, st)
	res := e.mustRun(RunOptions{})
	if res.Mode != ModeFull {
		t.Fatalf("first run mode %s, want full", res.Mode)
	}
	if res.Counts["created"] != 5 || res.Counts["groups_created"] != 5 {
		t.Fatalf("counts %v", res.Counts)
	}
	alice := e.user("alice")
	if alice.Email != "alice@firm.example" || alice.GivenName != "Alice" || alice.FamilyName != "Archer" || !alice.Active {
		t.Fatalf("alice = %+v", alice)
	}
	if l := e.link(alice.ID); l.DN != "uid=alice,ou=people,"+suffix || len(l.Key) != 36 {
		t.Fatalf("alice link %+v", l)
	}
	// Nested membership resolved locally through a cycle.
	if got := e.groupMembers("staff"); !slices.Equal(got, []string{"alice", "bob", "carol", "dave"}) {
		t.Fatalf("staff = %v", got)
	}
	if a, b := e.groupMembers("cycle-a"), e.groupMembers("cycle-b"); !slices.Equal(a, []string{"carol", "dave"}) || !slices.Equal(a, b) {
		t.Fatalf("cycle-a = %v, cycle-b = %v", a, b)
	}
	if its := e.items(res.RunID, "cycle"); len(its) != 1 || !strings.Contains(its[0].Reason, "cycle-a") {
		t.Fatalf("cycle items %+v", its)
	}
	if its := e.items(res.RunID, "created"); len(its) != 10 {
		t.Fatalf("created items = %d, want 10", len(its))
	}
	run, err := e.st.GetRun(context.Background(), res.RunID)
	if err != nil || run.Status != directory.RunOK || run.Job != "ldap-full:corp" {
		t.Fatalf("run %+v %v", run, err)
	}
	if n := e.domainEvents(res.RunID); n == 0 {
		t.Fatal("no audit events with actor ldap:corp and the run id")
	}

	// A second full sync with no changes writes nothing.
	e.now = e.now.Add(time.Hour)
	res2 := e.mustRun(RunOptions{Full: true})
	if n := e.domainEvents(res2.RunID); n != 0 {
		t.Fatalf("no-change full sync wrote %d audit events", n)
	}
	if res2.Counts["unchanged"] != 5 || res2.Counts["updated"] != 0 || res2.Counts["created"] != 0 {
		t.Fatalf("no-change counts %v", res2.Counts)
	}

	// Incremental: a rename keeps the user, a changed mail updates it.
	bob := e.user("bob")
	e.ldap.Modify(`dn: uid=bob,ou=people,dc=example,dc=org
changetype: modrdn
newrdn: uid=robert
deleteoldrdn: 1

dn: uid=alice,ou=people,dc=example,dc=org
changetype: modify
replace: mail
mail: alice.archer@firm.example
`)
	res3 := e.mustRun(RunOptions{})
	if res3.Mode != ModeIncremental {
		t.Fatalf("mode %s (%s), want incremental", res3.Mode, res3.Reason)
	}
	robert := e.user("robert")
	if robert.ID != bob.ID {
		t.Fatalf("rename made a new user %s (was %s)", robert.ID, bob.ID)
	}
	if l := e.link(bob.ID); l.DN != "uid=robert,ou=people,"+suffix {
		t.Fatalf("renamed link DN %q", l.DN)
	}
	if u := e.user("alice"); u.Email != "alice.archer@firm.example" {
		t.Fatalf("alice email %q", u.Email)
	}
	if got := e.groupMembers("caseworkers"); !slices.Equal(got, []string{"carol", "dave", "robert"}) {
		t.Fatalf("caseworkers after rename = %v", got)
	}
	if res3.Counts["users_seen"] > 3 {
		t.Fatalf("incremental read %d users, want only the changed ones", res3.Counts["users_seen"])
	}

	// Deletion: found by the full sync; link gone, user kept.
	e.ldap.Modify("dn: uid=erin,ou=people,dc=example,dc=org\nchangetype: delete\n")
	res4 := e.mustRun(RunOptions{Full: true})
	erin := e.user("erin")
	if l := e.link(erin.ID); l.GoneAt == nil {
		t.Fatal("erin's link not marked gone")
	}
	if erin.DeletedAt != nil {
		t.Fatal("erin deleted; want kept")
	}
	if its := e.items(res4.RunID, "gone"); len(its) != 1 || its[0].ObjectID != erin.ID {
		t.Fatalf("gone items %+v", its)
	}
	if got := e.groupMembers("solo"); len(got) != 0 {
		t.Fatalf("solo members after erin's deletion = %v", got)
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	e := newEnv(t, testenv.SlapdOptions{}, nil)
	res := e.mustRun(RunOptions{DryRun: true})
	if live, _ := e.links(); live != 0 {
		t.Fatalf("dry run wrote %d links", live)
	}
	var created, groups int
	for _, it := range res.Items {
		if it.Action == "created" && it.ObjectType == "user" {
			created++
		}
		if it.Action == "updated" && it.ObjectType == "group" {
			groups++
		}
	}
	if created != 5 || groups != 5 {
		t.Fatalf("plan: %d user creates, %d group member changes; want 5 and 5: %+v", created, groups, res.Items)
	}
	if n := e.domainEvents(""); n != 0 {
		t.Fatalf("dry run wrote %d audit events", n)
	}
	runs, err := e.st.ListRuns(context.Background(), store.RunQuery{Limit: 10})
	if err != nil || len(runs) != 0 {
		t.Fatalf("dry run recorded runs %v %v", runs, err)
	}
}

func TestCorrelationAndDisputes(t *testing.T) {
	e := newEnv(t, testenv.SlapdOptions{}, nil)
	ctx := context.Background()
	var aliceID string
	err := e.st.Update(ctx, audit.Meta{Actor: "test"}, func(ctx context.Context, tx store.Tx) error {
		// alice exists (by e-mail) from SCIM: the entry is linked to her.
		a := directory.User{UserName: "alice.scim", Email: "alice@firm.example", Active: true}
		if err := tx.CreateUser(ctx, &a); err != nil {
			return err
		}
		aliceID = a.ID
		// bob's e-mail and userName belong to two different users: disputed.
		if err := tx.CreateUser(ctx, &directory.User{UserName: "bob", Email: "robert@other.example", Active: true}); err != nil {
			return err
		}
		return tx.CreateUser(ctx, &directory.User{UserName: "bobby", Email: "bob@firm.example", Active: true})
	})
	if err != nil {
		t.Fatal(err)
	}
	res := e.mustRun(RunOptions{})
	if l := e.link(aliceID); l.DN != "uid=alice,ou=people,"+suffix {
		t.Fatalf("alice not correlated: %+v", l)
	}
	if u := e.user("alice"); u.ID != aliceID {
		t.Fatalf("alice's userName not taken from LDAP: %+v", u)
	}
	d := e.items(res.RunID, "disputed")
	if len(d) != 1 || !strings.Contains(d[0].Reason, "uid=bob") || !strings.Contains(d[0].Reason, "several users") {
		t.Fatalf("disputed %+v", d)
	}
	if res.Counts["created"] != 3 {
		t.Fatalf("counts %v", res.Counts)
	}
}

func TestStartTLS(t *testing.T) {
	e := newEnv(t, testenv.SlapdOptions{TLS: true}, nil)
	e.src.StartTLS = true
	e.src.ServerName = "127.0.0.1"
	// Without the test CA the server certificate is not trusted.
	if _, err := e.run(RunOptions{}); err == nil || !strings.Contains(err.Error(), "starttls") {
		t.Fatalf("StartTLS without CA: %v", err)
	}
	e.src.CAFile = e.ldap.CAFile()
	res := e.mustRun(RunOptions{})
	if res.Counts["created"] != 5 {
		t.Fatalf("counts %v", res.Counts)
	}
}

// Fault tests: each proves a bad read marks nothing gone.

func primed(t *testing.T, opts testenv.SlapdOptions) *env {
	e := newEnv(t, opts, nil)
	e.mustRun(RunOptions{})
	e.assertNothingGone(5)
	return e
}

func TestFaultSlapdStopsMidSync(t *testing.T) {
	e := primed(t, testenv.SlapdOptions{})
	e.hook = func(kind string, page int) {
		if kind == "users" && page == 0 {
			e.ldap.Stop()
		}
	}
	res, err := e.run(RunOptions{Full: true})
	if err == nil || res.Status != directory.RunFailed {
		t.Fatalf("run with slapd stopped: %v (%v)", err, res)
	}
	e.assertNothingGone(5)
	run, _ := e.st.GetRun(context.Background(), res.RunID)
	if run.Status != directory.RunFailed || run.Error == "" {
		t.Fatalf("run record %+v", run)
	}
	if its := e.items(res.RunID, "failed"); len(its) != 1 {
		t.Fatalf("failed items %+v", its)
	}
	// Back up: the next full run works and still finds nothing gone.
	e.hook = nil
	e.ldap.Start()
	e.mustRun(RunOptions{Full: true})
	e.assertNothingGone(5)
}

func TestFaultEmptyBase(t *testing.T) {
	e := primed(t, testenv.SlapdOptions{})
	e.src.UserBaseDNs = []string{"ou=empty," + suffix}
	res, err := e.run(RunOptions{Full: true})
	if !errors.Is(err, ErrUnsafe) || res.Status != directory.RunAborted {
		t.Fatalf("empty base: %v", err)
	}
	e.assertNothingGone(5)
	// A base that does not exist is an error, not an empty directory.
	e.src.UserBaseDNs = []string{"ou=missing," + suffix}
	if res, err := e.run(RunOptions{Full: true}); err == nil || res.Status != directory.RunFailed {
		t.Fatalf("missing base: %v", err)
	}
	e.assertNothingGone(5)
}

func TestFaultTooFewEntries(t *testing.T) {
	e := primed(t, testenv.SlapdOptions{})
	e.ldap.Modify(`dn: uid=alice,ou=people,dc=example,dc=org
changetype: delete

dn: uid=bob,ou=people,dc=example,dc=org
changetype: delete

dn: uid=carol,ou=people,dc=example,dc=org
changetype: delete
`)
	res, err := e.run(RunOptions{Full: true})
	if !errors.Is(err, ErrUnsafe) || res.Status != directory.RunAborted {
		t.Fatalf("2 of 5 users: %v", err)
	}
	e.assertNothingGone(5)
	// minFullFraction: 0 switches the shrink guard off: the same complete
	// read is applied and the 3 removed users' links are marked gone.
	off := 0.0
	e.src.MinFullFraction = &off
	res, err = e.run(RunOptions{Full: true})
	if err != nil || res.Status != directory.RunOK {
		t.Fatalf("guard off: %v %s", err, res.Status)
	}
	if live, gone := e.links(); live != 2 || gone != 3 {
		t.Fatalf("guard off: links live=%d gone=%d, want 2 and 3", live, gone)
	}
}

func TestFaultPagingCut(t *testing.T) {
	// The reader may only page through 3 entries in total: slapd cuts the
	// paged search with sizeLimitExceeded.
	e := primed(t, testenv.SlapdOptions{DatabaseConfig: `limits dn.exact="cn=reader,dc=example,dc=org" size.prtotal=3`})
	e.src.BindDN, e.src.BindPassword = "cn=reader,"+suffix, config.NewSecret("readerpw")
	res, err := e.run(RunOptions{Full: true})
	if !errors.Is(err, ErrTruncated) || res.Status != directory.RunAborted {
		t.Fatalf("cut paging: %v", err)
	}
	e.assertNothingGone(5)
}

func TestFaultStableIDUnreadable(t *testing.T) {
	// The reader may not read carol's entryUUID: her entry arrives without
	// a stable id, so nobody can be called gone.
	e := primed(t, testenv.SlapdOptions{DatabaseConfig: `access to dn.exact="uid=carol,ou=people,dc=example,dc=org" attrs=entryUUID
  by dn.exact="cn=reader,dc=example,dc=org" none
  by * read
access to * by * read`})
	e.src.BindDN, e.src.BindPassword = "cn=reader,"+suffix, config.NewSecret("readerpw")
	e.ldap.Modify("dn: uid=erin,ou=people,dc=example,dc=org\nchangetype: delete\n")
	res, err := e.run(RunOptions{Full: true})
	if !errors.Is(err, ErrUnsafe) || res.Status != directory.RunAborted || !strings.Contains(err.Error(), "entryUUID") {
		t.Fatalf("unreadable stable id: %v", err)
	}
	// erin really is gone, but the read cannot prove it: nothing marked.
	if live, gone := e.links(); gone != 0 || live != 5 {
		t.Fatalf("links live=%d gone=%d", live, gone)
	}
}

func TestPosixGroupMemberUID(t *testing.T) {
	ldif := fixture(t) + `
dn: cn=posix-staff,ou=groups,dc=example,dc=org
objectClass: posixGroup
cn: posix-staff
gidNumber: 5000
memberUid: alice
memberUid: Dave
memberUid: nobody
`
	e := newEnv(t, testenv.SlapdOptions{LDIF: ldif}, nil)
	e.src.GroupFilter, e.src.MemberAttribute = "(objectClass=posixGroup)", "memberUid"
	res := e.mustRun(RunOptions{})
	if got := e.groupMembers("posix-staff"); !slices.Equal(got, []string{"alice", "dave"}) {
		t.Fatalf("posix-staff = %v", got)
	}
	if res.Counts["groups_created"] != 1 {
		t.Fatalf("counts %v", res.Counts)
	}
	// Incremental after a group change rebuilds memberships from the links.
	e.ldap.Modify("dn: cn=posix-staff,ou=groups,dc=example,dc=org\nchangetype: modify\nadd: memberUid\nmemberUid: bob\n")
	res = e.mustRun(RunOptions{})
	if res.Mode != ModeIncremental || res.Counts["groups_changed"] != 1 {
		t.Fatalf("incremental: %s %v", res.Mode, res.Counts)
	}
	if got := e.groupMembers("posix-staff"); !slices.Equal(got, []string{"alice", "bob", "dave"}) {
		t.Fatalf("posix-staff after incremental = %v", got)
	}
}
