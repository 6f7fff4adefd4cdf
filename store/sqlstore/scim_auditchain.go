package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
)

// Chaining audit events inside the database (PostgreSQL, Dialect.WriteCTE).
//
// Every audited write locks the one audit chain head row, so writes are
// serialised on it for as long as it is held. When the head is read into
// the process to seal the events there (audit.Seal), it is held across a
// round trip and a process hop: the statement that locks it returns, the
// request's goroutine is scheduled, hashes, sends the events and COMMIT, and
// the backend is scheduled again. In the SCIM mixed load on 2 cores that
// took ~1.8 ms per write, which capped all writes at ~540/s and the whole
// mixed workload at ~1,350 requests/s, with the other writers waiting on
// the lock (9–10 ms per PUT and member PATCH in pg_stat_statements).
//
// flushChainInSQL instead sends one statement that locks the head, seals
// the events with it (SHA-256 in SQL over the canonical form the process
// prepared, all but the sequence number and the previous hash), inserts
// them and advances the head, in the same pipeline as the COMMIT when the
// transaction can send it (ExecCommitter): the head is held for that one
// statement and the COMMIT, with no process hop. It is also the last lock
// the transaction takes, after every row its writes locked, which keeps the
// lock-ordering rule of the SCIM writes (the head last) true by
// construction. The hashes are audit.ComputeHash's byte for byte
// (TestChainSQLHashMatchesAudit; the store conformance suite and scimload
// verify the chain end to end).

// The canonical form split around what only the database knows (the
// sequence number and the previous hash): audit.CanonicalPrefix, SEQ,
// audit.CanonicalMiddle, PREVHASH, audit.CanonicalSuffix.
const (
	chainPrefix = audit.CanonicalPrefix
	chainSuffix = audit.CanonicalSuffix
)

// chainMid returns the middle part for e (e.Time already truncated to
// microseconds, as audit.Seal does).
func chainMid(e *audit.Event) []byte { return audit.CanonicalMiddle(*e) }

// flushChainInSQL writes the pending events (at most smallFlush) chained
// after the head, locking the head in that statement (see above); with
// commit and an ExecCommitter it commits in the same pipeline.
func (t *txn) flushChainInSQL(ctx context.Context, commit bool) (committed bool, err error) {
	d := t.s.d
	var b strings.Builder
	args := make([]any, 0, len(t.pending)*10)
	if dc, ok := t.c.(*deferredConn); ok {
		// The kept write first (its rows are locked already), then the
		// head: the statement fails (division by zero, so the COMMIT in
		// its pipeline is skipped) unless the write changed exactly one row.
		t.c = dc.inner
		b.WriteString("WITH w AS (" + dc.q + " RETURNING 1),\n" +
			"h AS (SELECT seq, hash FROM audit_head WHERE id = 1 AND 1 / ((SELECT count(*) FROM w) = 1)::int = 1 FOR UPDATE)")
		args = append(args, dc.args...)
	} else {
		b.WriteString("WITH h AS (SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE)")
	}
	prev := "h"
	for i := range t.pending {
		e := &t.pending[i]
		e.Time = e.Time.UTC().Truncate(time.Microsecond)
		mid := chainMid(e)
		fmt.Fprintf(&b, `, e%d AS (SELECT %[2]s.seq + 1 AS seq, %[2]s.hash AS prev,
encode(sha256('%[3]s'::bytea || convert_to((%[2]s.seq + 1)::text, 'UTF8') || ?::bytea || convert_to(%[2]s.hash, 'UTF8') || '%[4]s'::bytea), 'hex') AS hash FROM %[2]s)`,
			i, prev, chainPrefix, chainSuffix)
		args = append(args, mid)
		prev = fmt.Sprintf("e%d", i)
	}
	b.WriteString(", ins AS (INSERT INTO audit_events (" + auditCols + ") ")
	for i := range t.pending {
		e := &t.pending[i]
		if i > 0 {
			b.WriteString(" UNION ALL ")
		}
		fmt.Fprintf(&b, "SELECT e%[1]d.seq, ?::timestamptz, ?::text, ?::text, ?::text, ?::text, ?::json, ?::json, ?::text, ?::text, e%[1]d.prev, e%[1]d.hash FROM e%[1]d", i)
		args = append(args, d.Time(e.Time), e.Actor, e.Action, e.ObjectType, e.ObjectID,
			jarg(e.Before), jarg(e.After), e.RunID, e.RequestID)
	}
	b.WriteString(") UPDATE audit_head SET seq = l.seq, hash = l.hash FROM " + prev + " l WHERE audit_head.id = 1")
	if ec, ok := t.raw.(ExecCommitter); ok && commit {
		if err := ec.ExecCommit(ctx, d.rebind(b.String()), args...); err != nil {
			return false, fmt.Errorf("store: audit: write events and commit: %w", t.s.mapErr(err))
		}
		t.pending = t.pending[:0]
		return true, nil
	}
	// Not committing here: later statements of the transaction may audit
	// more, chained after the head this one leaves (locked from here on).
	b.WriteString(" RETURNING audit_head.seq, audit_head.hash")
	if err := t.c.QueryRow(ctx, b.String(), args...).Scan(&t.headSeq, &t.headHash); err != nil {
		return false, fmt.Errorf("store: audit: write events: %w", t.s.mapErr(err))
	}
	t.headLoaded = true
	t.pending = t.pending[:0]
	return false, nil
}

// A write whose statement is the transaction's last (a SCIM PUT that
// changes only the user row) can travel with the flush: execWithFlush
// keeps it, and flushChainInSQL runs it first in its own statement, so the
// UPDATE, the events and the COMMIT are one round trip. Until then the
// transaction's connection is a deferredConn: any other statement sent
// meanwhile (through the txn's reader) runs the kept one first, so the
// order of the statements is always the order they were issued in.

// deferredConn is the txn's Conn while a write is kept (see above).
type deferredConn struct {
	r     *reader // whose c this is, restored to inner once the write is sent
	inner Conn
	q     string
	args  []any
}

func (c *deferredConn) release(ctx context.Context) error {
	c.r.c = c.inner
	n, err := c.inner.Exec(ctx, c.q, c.args...)
	if err == nil && n != 1 {
		err = fmt.Errorf("deferred write changed %d rows, want 1", n)
	}
	return err
}

func (c *deferredConn) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	if err := c.release(ctx); err != nil {
		return 0, err
	}
	return c.inner.Exec(ctx, q, args...)
}

func (c *deferredConn) Query(ctx context.Context, q string, args ...any) (Rows, error) {
	if err := c.release(ctx); err != nil {
		return nil, err
	}
	return c.inner.Query(ctx, q, args...)
}

func (c *deferredConn) QueryRow(ctx context.Context, q string, args ...any) Row {
	if err := c.release(ctx); err != nil {
		return errRow{err}
	}
	return c.inner.QueryRow(ctx, q, args...)
}

// errRow is a Row whose Scan fails with err.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// execWithFlush runs q (an INSERT, UPDATE or DELETE without RETURNING that
// changes exactly one row, on rows this transaction has locked already)
// with the audit flush where the dialect allows (see above), and returns 1;
// otherwise it runs it now and returns the rows affected. A write kept and
// then found to change another number of rows fails the transaction.
func (t *txn) execWithFlush(ctx context.Context, q string, args ...any) (int64, error) {
	if !t.s.d.WriteCTE || t.headLoaded {
		return t.c.Exec(ctx, q, args...)
	}
	if dc, ok := t.c.(*deferredConn); ok {
		if err := dc.release(ctx); err != nil {
			return 0, err
		}
	}
	t.c = &deferredConn{r: &t.reader, inner: t.c, q: q, args: args}
	return 1, nil
}

// sendDeferred runs the kept write, if any (a flush with no events).
func (t *txn) sendDeferred(ctx context.Context) error {
	if dc, ok := t.c.(*deferredConn); ok {
		return dc.release(ctx)
	}
	return nil
}
