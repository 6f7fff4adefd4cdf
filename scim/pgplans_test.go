package scim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/internal/testenv"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/store/postgres"
	"github.com/dirsyncd/dirsyncd/store/sqlstore"
)

// PostgreSQL-specific checks of the SCIM hot paths' cost: which plans the
// lookups get before the tables have statistics, and how long a write
// holds the audit chain head (store/sqlstore/scim_auditchain.go).

// headFree reports whether another session can lock the audit chain head
// right now (FOR UPDATE NOWAIT), i.e. whether no open transaction holds it.
func headFree(ctx context.Context, t *testing.T, raw sqlstore.DB) bool {
	t.Helper()
	tx, err := raw.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var seq int64
	err = tx.QueryRow(ctx, `SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE NOWAIT`).Scan(&seq)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "55P03" { // lock_not_available
		return false
	}
	if err != nil {
		t.Fatalf("probe the audit head: %v", err)
	}
	return true
}

// TestSCIMWritesLockAuditHeadOnlyAtCommit: a SCIM PUT and member PATCH do
// not hold the audit chain head while their transaction is still running
// its statements; the head is locked by the flush, in the statement sent
// with COMMIT (before, the UPDATE / INSERT / DELETE took it, and every
// other writer queued on it for the rest of the transaction, a round trip
// and a process hop). The chain stays intact.
func TestSCIMWritesLockAuditHeadOnlyAtCommit(t *testing.T) {
	e := newEnvOn(t, kindPostgres)
	uid := e.createUser("head@example.org", nil)
	gid := e.createGroup("Head")
	raw := e.st.(interface{ DB() sqlstore.DB }).DB()
	ctx := context.Background()
	steps := []struct {
		name string
		fn   func(ctx context.Context, tx store.Tx) error
	}{
		{"PUT", func(ctx context.Context, tx store.Tx) error {
			l := tx.(userLocker)
			cur, _, _, err := tx.(interface {
				SCIMLockUserExtras(ctx context.Context, id string) (directory.User, []directory.Grant, []directory.Group, error)
			}).SCIMLockUserExtras(ctx, uid)
			if err != nil {
				return err
			}
			u := cur
			u.DisplayName = "Changed <&> \u2028 é"
			return l.SCIMUpdateUser(ctx, &u, cur, cur.Version)
		}},
		{"add member", func(ctx context.Context, tx store.Tx) error {
			return lockGroupAddMember(ctx, tx, gid, uid)
		}},
		{"remove member", func(ctx context.Context, tx store.Tx) error {
			gm := tx.(groupMemberWriter)
			if _, err := gm.SCIMLockGroup(ctx, gid); err != nil {
				return err
			}
			return gm.SCIMRemoveMembers(ctx, gid, []string{uid})
		}},
	}
	for _, s := range steps {
		var free bool
		err := e.st.Update(ctx, audit.Meta{Actor: "scim:entra"}, func(ctx context.Context, tx store.Tx) error {
			if err := s.fn(ctx, tx); err != nil {
				return err
			}
			free = headFree(ctx, t, raw) // the write's statements ran; the flush and COMMIT follow
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if !free {
			t.Errorf("%s: the audit chain head is locked before the flush", s.name)
		}
	}
	mustVerifyAtLeast(ctx, t, e.st, 5)
}

// TestSCIMAuditChainSealedInSQLVerifies: events chained by the database
// (several in one transaction, each field with characters JSON escapes,
// HTML-escaped ones and non-ASCII; PostgreSQL text refuses invalid UTF-8 on any path) verify with the audit
// package's hash, and the events that follow them in the same transaction
// and in the next one chain on.
func TestSCIMAuditChainSealedInSQLVerifies(t *testing.T) {
	e := newEnvOn(t, kindPostgres)
	ctx := context.Background()
	odd := "a\"b\\c\n\t\x01<script>&amp; \u2028\u2029 é 😀"
	m := audit.Meta{Actor: "scim:" + odd, RequestID: "req-" + odd}
	err := e.st.Update(ctx, m, func(ctx context.Context, tx store.Tx) error {
		for i := range 3 {
			if err := tx.Record(ctx, "test.odd", "user", fmt.Sprintf("id-%d-%s", i, odd), map[string]string{"v": odd}, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		e.createUser(fmt.Sprintf("chain%d@example.org", i), map[string]any{"displayName": odd})
	}
	mustVerifyAtLeast(ctx, t, e.st, 5)
}

// TestSCIMLookupPlansWithoutStatistics: on tables never analyzed (a fresh
// install during its first provisioning cycle, before autovacuum runs), the
// statements a userName / externalId lookup executes get their generic plan
// after PostgreSQL's five custom ones (pg_prepared_statements), and that
// plan reads users through one index for the filter (for externalId the
// partial users_external_id_live_idx, not a BitmapAnd with the partial
// userName index read in full), and each group of the user by its key (not
// a scan of every live group).
func TestSCIMLookupPlansWithoutStatistics(t *testing.T) {
	dsn := testenv.Postgres(t)
	ctx := context.Background()
	st, err := postgres.Open(ctx, dsn, postgres.Options{MaxConns: 1}) // one session: its prepared statements are the store's
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	raw := st.DB()
	for _, tb := range []string{"users", "user_emails", "groups", "group_members", "grants"} {
		if _, err := raw.Exec(ctx, `ALTER TABLE `+tb+` SET (autovacuum_enabled = false)`); err != nil {
			t.Fatal(err)
		}
	}
	const nUsers, nGroups = 2000, 40
	users := make([]*directory.User, nUsers)
	for i := range users {
		users[i] = &directory.User{UserName: fmt.Sprintf("plan%04d@example.org", i), ExternalID: fmt.Sprintf("ext-%04d", i), Active: true,
			Emails: []directory.Email{{Value: fmt.Sprintf("plan%04d@example.org", i), Type: "work", Primary: true}}}
	}
	err = st.Update(ctx, audit.Meta{Actor: "test"}, func(ctx context.Context, tx store.Tx) error {
		if _, _, err := tx.UpsertUsers(ctx, users); err != nil {
			return err
		}
		for g := range nGroups {
			grp := &directory.Group{Source: "scim:test", DisplayName: fmt.Sprintf("Plan group %d", g)}
			if err := tx.CreateGroup(ctx, grp); err != nil {
				return err
			}
			if err := tx.AddMembers(ctx, grp.ID, []string{users[g].ID}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var reltuples float64
	if err := raw.QueryRow(ctx, `SELECT reltuples FROM pg_class WHERE relname = 'groups'`).Scan(&reltuples); err != nil || reltuples >= 0 {
		t.Fatalf("groups reltuples = %v (%v): the table was analyzed, nothing tested", reltuples, err)
	}
	var lister pageExtrasLister = st
	for _, c := range []struct{ attr, marker string }{
		{"userName", "u.user_name_lc = $1"},
		{"externalId", "u.external_id = $1"},
	} {
		for i := range 8 {
			val := users[i].UserName
			if c.attr == "externalId" {
				val = users[i].ExternalID
			}
			q := store.UserQuery{Filter: store.Cmp{Field: store.Field(c.attr), Op: store.OpEq, Value: val}, Limit: 100}
			page, _, groups, err := lister.SCIMListUsersExtras(ctx, q)
			if err != nil || len(page.Items) != 1 || len(groups[users[i].ID]) != 1 {
				t.Fatalf("%s lookup %d: %d users, groups %v, %v", c.attr, i, len(page.Items), groups, err)
			}
		}
		var name, stmt string
		var generic, custom int64
		err := raw.QueryRow(ctx, `SELECT name, statement, generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE '%' || $1 || '%' AND statement LIKE '%x_groups%'`, c.marker).
			Scan(&name, &stmt, &generic, &custom)
		if err != nil {
			t.Fatalf("%s: prepared lookup statement: %v", c.attr, err)
		}
		if generic == 0 {
			t.Errorf("%s: generic_plans = 0, custom_plans = %d: the lookup is planned anew on every execution", c.attr, custom)
		}
		if _, err := raw.Exec(ctx, `SET plan_cache_mode = force_generic_plan`); err != nil {
			t.Fatal(err)
		}
		plan := explainExecute(ctx, t, raw, name, users[0], c.attr)
		if _, err := raw.Exec(ctx, `RESET plan_cache_mode`); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(plan, "BitmapAnd") || strings.Contains(plan, "users_user_name_uq") && c.attr != "userName" {
			t.Errorf("%s: the generic plan ANDs in the partial userName index:\n%s", c.attr, plan)
		}
		want := map[string]string{"userName": "users_user_name_uq", "externalId": "users_external_id_live_idx"}[c.attr]
		if !strings.Contains(plan, want) {
			t.Errorf("%s: the generic plan does not use %s:\n%s", c.attr, want, plan)
		}
		if strings.Contains(plan, "groups_display_name_uq") || !strings.Contains(plan, "groups_pkey") {
			t.Errorf("%s: the user's groups are not read by key:\n%s", c.attr, plan)
		}
	}
}

// explainExecute returns the plan of EXPLAIN EXECUTE name(...) for the
// lookup of u by attr (the statement's parameters: value, limit, offset),
// as the index and node names it mentions.
func explainExecute(ctx context.Context, t *testing.T, raw sqlstore.DB, name string, u *directory.User, attr string) string {
	t.Helper()
	val := u.UserName
	if attr == "externalId" {
		val = u.ExternalID
	}
	var js []byte
	// name is pgx's statement name (stmtcache_<hex>), read from the server;
	// val is this test's own user name or external id (no quote in it).
	if err := raw.QueryRow(ctx, `EXPLAIN (FORMAT JSON) EXECUTE `+name+`('`+val+`', 100, 0)`).Scan(&js); err != nil {
		t.Fatalf("explain %s: %v", name, err)
	}
	var nodes []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if k == "Node Type" || k == "Index Name" || k == "Relation Name" {
					nodes = append(nodes, fmt.Sprint(x))
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	var doc any
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	walk(doc)
	return strings.Join(nodes, " ")
}

// TestMemberOnlyPatchChecks: a PATCH whose one operation adds members or
// removes members[value eq "…"] (the store's one-statement path on
// PostgreSQL, groupMemberLockWriter) answers as the general path does, and
// changes nothing when it fails: stale If-Match 412, a member that is no
// user 400, a group that is not a SCIM group 404, a missing group 404.
func TestMemberOnlyPatchChecks(t *testing.T) {
	bothStores(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		uid := e.createUser("only@example.org", nil)
		gid := e.createGroup("Only")
		add := func(ids ...string) map[string]any {
			vs := []any{}
			for _, id := range ids {
				vs = append(vs, map[string]any{"value": id})
			}
			return map[string]any{"schemas": []string{URNPatchOp}, "Operations": []any{map[string]any{"op": "Add", "path": "members", "value": vs}}}
		}
		remove := map[string]any{"schemas": []string{URNPatchOp}, "Operations": []any{map[string]any{"op": "remove", "path": `members[value eq "` + uid + `"]`}}}
		members := func() int {
			ids, err := e.st.ListGroupMembers(ctx, gid, "", 10)
			if err != nil {
				t.Fatal(err)
			}
			return len(ids)
		}
		e.must(e.do("PATCH", "/Groups/"+gid, add(uid), "If-Match", `W/"99"`), 412)
		e.must(e.do("PATCH", "/Groups/"+gid, add(uid, "no-such-user")), 400)
		if n := members(); n != 0 {
			t.Fatalf("%d members after failed PATCHes", n)
		}
		e.must(e.do("PATCH", "/Groups/no-such-group", add(uid)), 404)
		e.must(e.do("PATCH", "/Groups/"+gid, add(uid)), 204)
		if n := members(); n != 1 {
			t.Fatalf("%d members after the addition", n)
		}
		e.must(e.do("PATCH", "/Groups/"+gid, remove), 204)
		if n := members(); n != 0 {
			t.Fatalf("%d members after the removal", n)
		}
		// A group of another source (LDAP) is not a SCIM resource.
		var ldap directory.Group
		err := e.st.Update(ctx, audit.Meta{Actor: "ldap:test"}, func(ctx context.Context, tx store.Tx) error {
			ldap = directory.Group{Source: "ldap", SourceKey: "cn=x", DisplayName: "LDAP"}
			return tx.CreateGroup(ctx, &ldap)
		})
		if err != nil {
			t.Fatal(err)
		}
		e.must(e.do("PATCH", "/Groups/"+ldap.ID, add(uid)), 404)
		if ids, _ := e.st.ListGroupMembers(ctx, ldap.ID, "", 10); len(ids) != 0 {
			t.Fatalf("LDAP group members %v after a SCIM PATCH", ids)
		}
		if v, err := e.st.VerifyAudit(ctx); err != nil || !v.OK() {
			t.Fatalf("VerifyAudit = %+v, %v", v, err)
		}
	})
}

// mustVerifyAtLeast: the audit chain verifies and holds at least n events.
func mustVerifyAtLeast(ctx context.Context, t *testing.T, st store.Store, n int64) {
	t.Helper()
	v, err := st.VerifyAudit(ctx)
	if err != nil || !v.OK() {
		t.Fatalf("VerifyAudit = %+v, %v", v, err)
	}
	if v.Checked < n {
		t.Fatalf("VerifyAudit checked %d events, want at least %d", v.Checked, n)
	}
}
