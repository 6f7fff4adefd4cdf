package postgres

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/internal/testenv"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/store/sqlstore"
)

// TestLinkedLegacyLoginsUsePartialIndex: migration 0053 indexes only the
// linked legacy logins (user_id not empty); the store's look-ups by user
// say so, and PostgreSQL uses the index for them; the bulk write that
// fills it (with its audit events, TEXT since 0053) still verifies.
func TestLinkedLegacyLoginsUsePartialIndex(t *testing.T) {
	ctx := context.Background()
	s := migratedStore(t)
	ls := make([]*directory.LegacyLogin, 5000)
	for i := range ls {
		ls[i] = &directory.LegacyLogin{Login: fmt.Sprintf("L%05d", i), FirmNumber: "3856", Email: fmt.Sprintf("l%d@firm.example", i)}
		if i%10 == 0 {
			ls[i].UserID = fmt.Sprintf("u%05d", i)
		}
	}
	err := s.Update(ctx, audit.Meta{Actor: "t"}, func(ctx context.Context, tx store.Tx) error {
		_, err := tx.(interface {
			PutLegacyLogins(context.Context, []*directory.LegacyLogin) (int, error)
		}).PutLegacyLogins(ctx, ls)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.TestingExecRaw(ctx, "ANALYZE legacy_logins"); err != nil {
		t.Fatal(err)
	}
	got, err := s.ListLegacyLogins(ctx, store.LegacyLoginQuery{UserID: "u00010"})
	if err != nil || len(got) != 1 || got[0].Login != "L00010" {
		t.Fatalf("by user = %+v, %v", got, err)
	}
	pool := s.DB().(*pgDB).pool
	explain := func(types, q, args string) (string, error) { return genericPlan(ctx, pool, types, q, args) }
	for _, tc := range []struct{ types, q, args string }{
		{"(text)", "SELECT login FROM legacy_logins WHERE user_id <> '' AND user_id = $1", "('u00010')"},                                                            // ListLegacyLogins
		{"(text, text)", "SELECT login FROM legacy_logins WHERE user_id <> '' AND user_id >= $1 AND user_id <= $2 ORDER BY user_id, login", "('u00010', 'u00020')"}, // ListLegacyLoginsInRange
	} {
		plan, err := explain(tc.types, tc.q, tc.args)
		if err != nil {
			t.Errorf("%s: %v", tc.q, err)
		} else if !strings.Contains(plan, "legacy_logins_user_idx") {
			t.Errorf("%s: plan %q does not use legacy_logins_user_idx", tc.q, plan)
		}
	}
	var def string
	if err := pool.QueryRow(ctx, `SELECT indexdef FROM pg_indexes WHERE indexname = 'legacy_logins_user_idx'`).Scan(&def); err != nil || !strings.Contains(def, "WHERE (user_id <> ''") {
		t.Errorf("legacy_logins_user_idx = %q, %v; want the partial index of migration 0053", def, err)
	}
	var types string
	if err := pool.QueryRow(ctx, `SELECT string_agg(table_name || '.' || column_name || ' ' || data_type, ', ' ORDER BY table_name, column_name)
FROM information_schema.columns WHERE table_name IN ('audit_events', 'run_items') AND column_name IN ('before_json', 'after_json')`).Scan(&types); err != nil ||
		types != "audit_events.after_json text, audit_events.before_json text, run_items.after_json text, run_items.before_json text" {
		t.Errorf("document columns: %q, %v; want text (migration 0053)", types, err)
	}
	res, err := s.VerifyAudit(ctx)
	if err != nil || len(res.Problems) != 0 || res.Checked < 5000 {
		t.Fatalf("audit verify: %+v, %v", res, err)
	}
}

// TestUniquenessCheckPlansWithoutStatistics: on a users table never
// analyzed (a fresh install's first provisioning burst), the generic plan
// of the userName uniqueness check of every create and update reads
// users_user_name_uq, not the whole of another partial index on live users
// (migration 0054 narrowed users_external_id_live_idx, which it read: 283
// instead of ~700 SCIM creates/s).
func TestUniquenessCheckPlansWithoutStatistics(t *testing.T) {
	ctx := context.Background()
	s := migratedStore(t)
	err := s.Update(ctx, audit.Meta{Actor: "t"}, func(ctx context.Context, tx store.Tx) error {
		for i := range 20 {
			u := &directory.User{UserName: fmt.Sprintf("u%d@firm.example", i), ExternalID: fmt.Sprintf("ext-%d", i), Active: true}
			if err := tx.CreateUser(ctx, u); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := genericPlan(ctx, s.DB().(*pgDB).pool, "(text, text)",
		"SELECT id FROM users WHERE user_name_lc = $1 AND deleted_at IS NULL AND id <> $2 LIMIT 1", "('x', 'y')") // checkUserUnique
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p, "users_user_name_uq") {
		t.Errorf("uniqueness check without statistics: plan %q does not use users_user_name_uq", p)
	}
}

// migratedStore opens a fresh, migrated test database.
func migratedStore(t *testing.T) *sqlstore.Store {
	t.Helper()
	s, err := Open(context.Background(), testenv.Postgres(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// genericPlan is the plan of q as a prepared statement gets it after five
// runs (the parameters unknown to the planner): PREPARE p<types> AS q, then
// EXPLAIN EXECUTE p<args>, in a transaction rolled back after.
func genericPlan(ctx context.Context, pool *pgxpool.Pool, types, q, args string) (string, error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return "", err
	}
	defer func() {
		_, _ = tx.Exec(ctx, "DEALLOCATE p", pgx.QueryExecModeSimpleProtocol) // session-wide, not rolled back
		_ = tx.Rollback(ctx)
	}()
	for _, stmt := range []string{"SET LOCAL plan_cache_mode = force_generic_plan", "PREPARE p" + types + " AS " + q} {
		if _, err := tx.Exec(ctx, stmt, pgx.QueryExecModeSimpleProtocol); err != nil {
			return "", fmt.Errorf("%s: %w", stmt, err)
		}
	}
	rows, err := tx.Query(ctx, "EXPLAIN EXECUTE p"+args, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return "", err
	}
	return planText(rows)
}

// planText joins the lines of an EXPLAIN with "; " and closes rows.
func planText(rows pgx.Rows) (string, error) {
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return "", err
		}
		plan = append(plan, line)
	}
	return strings.Join(plan, "; "), rows.Err()
}

// TestLiveUsersPlanWithoutStatistics: on a users table never analyzed (a
// first LDAP sync's 100,000 new users before autovacuum reaches them), the
// live-user check of AddMembers and ReplaceMembers reads the users it is
// given by the primary key, not the whole of the partial users_user_name_uq
// (which it did with "deleted_at IS NULL" in its WHERE clause: 18 ms for
// 150 ids, half of a PostgreSQL first full sync).
func TestLiveUsersPlanWithoutStatistics(t *testing.T) {
	ctx := context.Background()
	s := migratedStore(t)
	for _, q := range []string{
		"ALTER TABLE users SET (autovacuum_enabled = false)",
		`INSERT INTO users (id, user_name, user_name_lc, version, created_at, updated_at)
SELECT 'u' || lpad(g::text, 6, '0'), 'n' || g, 'n' || g, 1, now(), now() FROM generate_series(0, 99999) g`,
	} {
		if err := s.TestingExecRaw(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	ids := make([]string, 150) // one group's new members (planFor: unprepared, planned for these values)
	for i := range ids {
		ids[i] = fmt.Sprintf("u%06d", i*601)
	}
	q, arg := sqlstore.LiveUsersSQL(Dialect, ids)
	rows, err := s.DB().(*pgDB).pool.Query(ctx, "EXPLAIN "+q, pgx.QueryExecModeExec, arg)
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, strings.TrimSpace(line))
	}
	rows.Close()
	if p := strings.Join(plan, "; "); !strings.Contains(p, "users_pkey") || strings.Contains(p, "users_user_name_uq") {
		t.Errorf("live-user check without statistics: plan %q does not read users_pkey alone", p)
	}
}
