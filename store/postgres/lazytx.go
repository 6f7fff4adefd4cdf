package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dirsyncd/dirsyncd/store/sqlstore"
)

// lazyTx is a transaction whose BEGIN travels with its first statement
// and whose COMMIT can travel with its last (sqlstore.ExecCommitter), in
// one pgx pipeline (Batch) each: a transaction of one statement and one
// audit flush is 3 round trips to the server instead of 5 (BEGIN,
// statement, head lock, audit, COMMIT).
//
// The semantics are a plain transaction's: statements after BEGIN run in
// it; an error inside a pipeline skips the rest of it (PostgreSQL discards
// messages up to the Sync after an error), so a pipelined COMMIT never runs
// after a failed statement and the deferred Rollback ends the transaction.
// A connection released while still in a transaction (a Rollback that
// failed) is destroyed by the pool, never reused.
type lazyTx struct {
	conn  *pgxpool.Conn
	begun bool
	done  bool
}

var (
	_ sqlstore.TxConn        = (*lazyTx)(nil)
	_ sqlstore.Copier        = (*lazyTx)(nil)
	_ sqlstore.ExecCommitter = (*lazyTx)(nil)
)

func (d *pgDB) Begin(ctx context.Context) (sqlstore.TxConn, error) {
	c, err := d.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	return &lazyTx{conn: c}, nil
}

func (t *lazyTx) check() error {
	if t.done {
		return pgx.ErrTxClosed
	}
	return nil
}

// begin sends BEGIN alone (statements that cannot join a pipeline: raw
// multi-command SQL, COPY).
func (t *lazyTx) begin(ctx context.Context) error {
	if t.begun {
		return nil
	}
	if _, err := t.conn.Exec(ctx, "BEGIN"); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	t.begun = true
	return nil
}

// batch returns the pipeline results of [BEGIN,] q: the caller reads q's
// result from it and closes it.
func (t *lazyTx) batch(ctx context.Context, q string, args []any, extra ...string) (pgx.BatchResults, error) {
	b := &pgx.Batch{}
	first := !t.begun
	if first {
		b.Queue("BEGIN")
	}
	b.Queue(q, args...)
	for _, e := range extra {
		b.Queue(e)
	}
	br := t.conn.SendBatch(ctx, b)
	t.begun = true // sent: from here on a Rollback is needed
	if first {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return nil, fmt.Errorf("begin: %w", err)
		}
	}
	return br, nil
}

func (t *lazyTx) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	if err := t.check(); err != nil {
		return 0, err
	}
	if len(args) == 0 || t.begun || unprepared(args) { // raw SQL (several commands) and long lists run as pgConn runs them
		if err := t.begin(ctx); err != nil {
			return 0, err
		}
		return pgConn{t.conn}.Exec(ctx, q, args...)
	}
	br, err := t.batch(ctx, q, args)
	if err != nil {
		return 0, err
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (t *lazyTx) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	if t.begun || unprepared(args) {
		if err := t.begin(ctx); err != nil {
			return nil, err
		}
		return pgConn{t.conn}.Query(ctx, q, args...)
	}
	br, err := t.batch(ctx, q, args)
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		_ = br.Close()
		return nil, err
	}
	return &batchRows{pgRows{rows}, br}, nil
}

func (t *lazyTx) QueryRow(ctx context.Context, q string, args ...any) sqlstore.Row {
	if err := t.check(); err != nil {
		return errRow{err}
	}
	if t.begun || unprepared(args) {
		if err := t.begin(ctx); err != nil {
			return errRow{err}
		}
		return pgConn{t.conn}.QueryRow(ctx, q, args...)
	}
	br, err := t.batch(ctx, q, args)
	if err != nil {
		return errRow{err}
	}
	return batchRow{br.QueryRow(), br}
}

// ExecCommit runs q and COMMIT in one pipeline.
func (t *lazyTx) ExecCommit(ctx context.Context, q string, args ...any) error {
	if err := t.check(); err != nil {
		return err
	}
	if unprepared(args) { // a long list cannot ride in the pipeline: run it, then commit
		if _, err := t.Exec(ctx, q, args...); err != nil {
			return err
		}
		return t.Commit(ctx)
	}
	br, err := t.batch(ctx, q, args, "COMMIT")
	if err != nil {
		return err
	}
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return err // COMMIT was skipped: the caller rolls back
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return t.committed(tag)
}

func (t *lazyTx) committed(tag pgconn.CommandTag) error {
	t.done = true
	t.conn.Release()
	if tag.String() == "ROLLBACK" { // COMMIT of a failed transaction
		return pgx.ErrTxCommitRollback
	}
	return nil
}

func (t *lazyTx) Commit(ctx context.Context) error {
	if err := t.check(); err != nil {
		return err
	}
	if !t.begun { // nothing ran: nothing to commit
		t.done = true
		t.conn.Release()
		return nil
	}
	tag, err := t.conn.Exec(ctx, "COMMIT")
	if err != nil {
		// The transaction is over either way (a failed COMMIT cannot be
		// retried): give the connection back, or a caller that does not roll
		// back after a failed commit (writeTx, a lease renewal cancelled at
		// shutdown) leaks it and the pool's Close waits for it forever. The
		// pool closes a connection left inside a transaction.
		t.done = true
		t.conn.Release()
		return fmt.Errorf("commit: %w", err)
	}
	return t.committed(tag)
}

func (t *lazyTx) Rollback(ctx context.Context) error {
	if t.done {
		return pgx.ErrTxClosed
	}
	t.done = true
	defer t.conn.Release() // still in a transaction (rollback failed): the pool destroys it
	if !t.begun {
		return nil
	}
	if _, err := t.conn.Exec(ctx, "ROLLBACK"); err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	return nil
}

// CopyFrom bulk-loads n rows with COPY (sqlstore.Copier); pgx calls row
// from its encoding goroutine while it streams the rows before.
func (t *lazyTx) CopyFrom(ctx context.Context, table string, cols []string, n int, row func(i int) []any) (int64, error) {
	if err := t.check(); err != nil {
		return 0, err
	}
	if err := t.begin(ctx); err != nil {
		return 0, err
	}
	i := 0
	return t.conn.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromFunc(func() ([]any, error) {
		if i == n {
			return nil, nil
		}
		i++
		return row(i - 1), nil
	}))
}

// batchRows closes the pipeline with the rows.
type batchRows struct {
	pgRows
	br pgx.BatchResults
}

func (r *batchRows) Close() {
	r.pgRows.Close()
	_ = r.br.Close()
}

// batchRow scans its row, then closes the pipeline.
type batchRow struct {
	row pgx.Row
	br  pgx.BatchResults
}

func (r batchRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if cerr := r.br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return sqlstore.ErrNoRows
	}
	return err
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
