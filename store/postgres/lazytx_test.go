package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/caseaccess"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/internal/testenv"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/store/sqlstore"
)

// roundTrips counts what goes to the server: each query outside a batch
// and each batch (one pipeline) is one round trip once its statements are
// prepared (the warm-up prepares them).
type roundTrips struct {
	mu      sync.Mutex
	queries []string
	batches [][]string
	cur     []string
}

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.mu.Lock()
	r.queries = append(r.queries, d.SQL)
	r.mu.Unlock()
	return ctx
}
func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.mu.Lock()
	r.cur = nil
	r.mu.Unlock()
	return ctx
}
func (r *roundTrips) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	r.mu.Lock()
	r.cur = append(r.cur, d.SQL)
	r.mu.Unlock()
}
func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {
	r.mu.Lock()
	r.batches = append(r.batches, r.cur)
	r.mu.Unlock()
}
func (r *roundTrips) reset() {
	r.mu.Lock()
	r.queries, r.batches = nil, nil
	r.mu.Unlock()
}
func (r *roundTrips) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queries) + len(r.batches)
}

func tracedStore(t *testing.T) (*sqlstore.Store, *roundTrips) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	rt := &roundTrips{}
	cfg.ConnConfig.Tracer = rt
	cfg.MaxConns = 1 // every transaction reuses the one connection
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := sqlstore.New(&pgDB{pool: pool}, Dialect, Migrations(), sqlstore.Options{})
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, rt
}

// TestLazyTxRoundTrips: BEGIN travels with the first statement and COMMIT
// with the audit flush, so a transaction of one write and its audit event
// is 2 round trips (was 5), and one of an audit event alone is 1 (the flush
// locks the chain head in its own statement: sqlstore's flushChainInSQL).
func TestLazyTxRoundTrips(t *testing.T) {
	s, rt := tracedStore(t)
	ctx := context.Background()
	m := audit.Meta{Actor: "test"}
	put := func(n string) error {
		return s.Update(ctx, m, func(ctx context.Context, tx store.Tx) error {
			f := directory.Firm{Number: n, Name: "Firm " + n, Type: directory.FirmChambers}
			return tx.PutFirm(ctx, &f)
		})
	}
	record := func() error {
		return s.Update(ctx, m, func(ctx context.Context, tx store.Tx) error {
			return tx.Record(ctx, "test.note", "note", "n1", nil, map[string]string{"k": "v"})
		})
	}
	// warm up: prepare every statement once
	if err := put("1"); err != nil {
		t.Fatal(err)
	}
	if err := record(); err != nil {
		t.Fatal(err)
	}
	rt.reset()
	if err := record(); err != nil {
		t.Fatal(err)
	}
	if n := rt.count(); n != 1 {
		t.Fatalf("audit-only transaction: %d round trips, want 1 (queries %q, batches %q)", n, rt.queries, rt.batches)
	}
	// how many statements PutFirm runs itself, counted on a plain pool read path
	rt.reset()
	if err := put("2"); err != nil {
		t.Fatal(err)
	}
	stmts := 0
	for _, b := range rt.batches {
		stmts += len(b)
	}
	stmts += len(rt.queries)
	// statements = BEGIN + firm statements + audit (locking the head) + COMMIT;
	// round trips = statements - 2 (BEGIN and COMMIT ride along).
	if n := rt.count(); n != stmts-2 {
		t.Fatalf("one-write transaction: %d round trips for %d statements, want %d (queries %q, batches %q)", n, stmts, stmts-2, rt.queries, rt.batches)
	}
	if f, err := s.GetFirm(ctx, "2"); err != nil || f.Name != "Firm 2" {
		t.Fatalf("firm after commit: %+v %v", f, err)
	}
	v, err := s.VerifyAudit(ctx)
	if err != nil || !v.OK() || v.Checked != 4 {
		t.Fatalf("VerifyAudit = %+v %v", v, err)
	}
}

// TestLazyTxFailures: a failing first statement (it travelled with BEGIN)
// and a failing audit flush (it travelled with COMMIT) leave nothing
// written and the one pooled connection usable, outside any transaction.
func TestLazyTxFailures(t *testing.T) {
	s, _ := tracedStore(t)
	ctx := context.Background()
	m := audit.Meta{Actor: "test"}
	u := directory.User{UserName: "alice", Email: "alice@example.org", Active: true}
	if err := s.Update(ctx, m, func(ctx context.Context, tx store.Tx) error { return tx.CreateUser(ctx, &u) }); err != nil {
		t.Fatal(err)
	}
	// the first statement fails: a duplicate userName
	dup := directory.User{UserName: "ALICE", Email: "other@example.org", Active: true}
	err := s.Update(ctx, m, func(ctx context.Context, tx store.Tx) error { return tx.CreateUser(ctx, &dup) })
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate user: %v, want ErrConflict", err)
	}
	// an empty transaction (nothing sent) commits as a no-op
	if err := s.Update(ctx, m, func(context.Context, store.Tx) error { return nil }); err != nil {
		t.Fatalf("empty transaction: %v", err)
	}
	// the audit statement, pipelined with COMMIT, fails: nothing commits
	if err := s.TestingExecRaw(ctx, `CREATE FUNCTION lazy_fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected audit failure'; END; $$;
CREATE TRIGGER lazy_fail BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION lazy_fail();`); err != nil {
		t.Fatal(err)
	}
	err = s.Update(ctx, m, func(ctx context.Context, tx store.Tx) error {
		f := directory.Firm{Number: "7", Name: "Seven", Type: directory.FirmChambers}
		return tx.PutFirm(ctx, &f)
	})
	if err == nil {
		t.Fatal("transaction with a failing audit write committed")
	}
	if err := s.TestingExecRaw(ctx, `DROP TRIGGER lazy_fail ON audit_events`); err != nil {
		t.Fatal(err) // the connection is usable again
	}
	if _, err := s.GetFirm(ctx, "7"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("firm of the failed transaction: %v, want ErrNotFound", err)
	}
	c, err := s.DB().(*pgDB).pool.Acquire(ctx) // the pool's one connection
	if err != nil {
		t.Fatal(err)
	}
	st := c.Conn().PgConn().TxStatus()
	c.Release()
	if st != 'I' {
		t.Fatalf("pooled connection left in transaction status %q, want idle", st)
	}
	// and no transaction left its connection dirty (the pool would have
	// destroyed it and opened another)
	if n := s.DB().(*pgDB).pool.Stat().NewConnsCount(); n != 1 {
		t.Fatalf("%d connections opened, want 1: a transaction left its connection unusable", n)
	}
	v, err := s.VerifyAudit(ctx)
	if err != nil || !v.OK() || v.Checked != 1 {
		t.Fatalf("VerifyAudit = %+v %v", v, err)
	}
}

// TestFirstAccessRoundTrips: recording a first case access (the decision
// endpoint's write) takes the audit head lock in its INSERT, so the write
// is 2 round trips: [BEGIN + INSERT and head lock], [audit event + COMMIT].
func TestFirstAccessRoundTrips(t *testing.T) {
	s, rt := tracedStore(t)
	ctx := context.Background()
	m := audit.Meta{Actor: "test"}
	cs := s.CaseAccess()
	now := time.Now().UTC().Truncate(time.Microsecond)
	ids := make([]string, 3)
	for i := range ids {
		u := directory.User{UserName: fmt.Sprintf("u%d", i), Email: fmt.Sprintf("u%d@example.org", i), Active: true}
		if err := s.Update(ctx, m, func(ctx context.Context, tx store.Tx) error { return tx.CreateUser(ctx, &u) }); err != nil {
			t.Fatal(err)
		}
		ids[i] = u.ID
	}
	if err := cs.UpdateCases(ctx, m, func(ctx context.Context, tx caseaccess.Tx) error {
		return tx.CreateCase(ctx, &caseaccess.Case{Ref: "C1", CreatedAt: now})
	}); err != nil {
		t.Fatal(err)
	}
	first := func(uid string) (bool, error) {
		var ok bool
		err := cs.UpdateCases(ctx, m, func(ctx context.Context, tx caseaccess.Tx) error {
			var err error
			ok, err = tx.InsertAccess(ctx, &caseaccess.Access{CaseRef: "C1", UserID: uid, FirstAt: now, ViaKind: caseaccess.ViaInvite, ViaID: "i1"})
			return err
		})
		return ok, err
	}
	if ok, err := first(ids[0]); !ok || err != nil { // warm up: prepares the statements
		t.Fatalf("first access: %v %v", ok, err)
	}
	rt.reset()
	if ok, err := first(ids[1]); !ok || err != nil {
		t.Fatalf("first access: %v %v", ok, err)
	}
	if n := rt.count(); n != 2 {
		t.Fatalf("first access: %d round trips, want 2 (queries %q, batches %q)", n, rt.queries, rt.batches)
	}
	// a second first access of the same user writes nothing (and no event)
	if ok, err := first(ids[1]); ok || err != nil {
		t.Fatalf("repeated first access: %v %v, want false", ok, err)
	}
	v, err := s.VerifyAudit(ctx)
	if err != nil || !v.OK() || v.Checked != 6 { // 3 users, 1 case, 2 first accesses
		t.Fatalf("VerifyAudit = %+v %v", v, err)
	}
}

// TestLongListsRunUnprepared: a statement with a long list argument is not
// kept as a prepared statement, so PostgreSQL cannot reuse a generic plan
// made while the table was small (a sequential scan comparing each row
// with the whole list: a first sync into an empty store went quadratic);
// a short list is prepared and cached as usual.
func TestLongListsRunUnprepared(t *testing.T) {
	s, _ := tracedStore(t)
	ctx := context.Background()
	prepared := func(marker string) int {
		var n int
		if err := s.DB().QueryRow(ctx, `SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%' || $1 || '%' AND statement NOT LIKE '%pg_prepared_statements%'`, marker).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	list := func(n int) []string {
		l := make([]string, n)
		for i := range l {
			l[i] = fmt.Sprintf("u%d", i)
		}
		return l
	}
	for _, tc := range []struct {
		marker string
		n      int
		want   int
	}{{"short_list", bigList - 1, 1}, {"long_list", bigList, 0}} {
		q := `SELECT id AS ` + tc.marker + ` FROM users WHERE deleted_at IS NULL AND user_name_lc = ANY($1)`
		for range 6 { // past the five executions after which PostgreSQL may settle on a generic plan
			rows, err := s.DB().Query(ctx, q, list(tc.n))
			if err != nil {
				t.Fatal(err)
			}
			rows.Close()
		}
		if got := prepared(tc.marker); got != tc.want {
			t.Errorf("%s (%d elements): %d prepared statements, want %d", tc.marker, tc.n, got, tc.want)
		}
	}
}

// TestFailedCommitReleasesConnection: a COMMIT that fails (its context
// cancelled) gives the connection back to the pool even when the caller
// does not roll back (writeTx), so the pool's Close does not wait forever
// (it did: scheduler's TestShutdown hung about once in 30 runs, a lease
// renewal cancelled at shutdown).
func TestFailedCommitReleasesConnection(t *testing.T) {
	pool, err := pgxpool.New(context.Background(), testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	db := &pgDB{pool: pool}
	tx, err := db.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tx.Commit(ctx); err == nil {
		t.Fatal("commit with a cancelled context succeeded")
	}
	// The pool closes such a connection in the background (it is inside a
	// transaction); Close waits for that, and only for that.
	closed := make(chan struct{})
	go func() { pool.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the pool's Close waits for the failed transaction's connection")
	}
}
