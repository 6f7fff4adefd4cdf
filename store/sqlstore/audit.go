package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/store"
)

// flushEvery bounds the number of buffered audit events in a transaction.
const flushEvery = 5000

// smallFlush: up to this many events are written with the chain head in one
// statement where the dialect allows it (Dialect.WriteCTE).
const smallFlush = 20

// record buffers an audit event for this transaction; it is sealed into the
// chain and inserted before commit (flushAudit), in the same transaction.
func (t *txn) record(ctx context.Context, action, objectType, objectID string, before, after json.RawMessage) error {
	t.pending = append(t.pending, audit.Event{
		Time: t.s.nowUTC(), Actor: t.meta.Actor, Action: action, ObjectType: objectType, ObjectID: objectID,
		Before: before, After: after, RunID: t.meta.RunID, RequestID: t.meta.RequestID,
	})
	if len(t.pending) >= flushEvery {
		return t.flushAudit(ctx)
	}
	return nil
}

// Record writes a free-form audit event.
func (t *txn) Record(ctx context.Context, action, objectType, objectID string, before, after any) error {
	if action == "" {
		return fmt.Errorf("store: record: empty action")
	}
	return t.record(ctx, action, objectType, objectID, audit.Marshal(before), audit.Marshal(after))
}

const auditCols = `seq, at, actor, action, object_type, object_id, before_json, after_json, run_id, request_id, prev_hash, hash`

var auditColList = strings.Split(strings.ReplaceAll(auditCols, " ", ""), ",")

// flushAudit chains the buffered events after the current head (locked for
// the rest of the transaction) and inserts them.
func (t *txn) flushAudit(ctx context.Context) error {
	_, err := t.flush(ctx, false)
	return err
}

// flushAndCommit flushes the buffered events and, when the last statement
// can carry the COMMIT (ExecCommitter), commits with it: committed says
// so; otherwise the caller commits.
func (t *txn) flushAndCommit(ctx context.Context) (committed bool, err error) {
	return t.flush(ctx, true)
}

func (t *txn) flush(ctx context.Context, commit bool) (committed bool, err error) {
	if len(t.pending) == 0 {
		if err := t.sendDeferred(ctx); err != nil { // a write kept for the flush (scim_auditchain.go)
			return false, err
		}
		if t.headDirty && commit { // writeEvents advanced the chain: store the head
			if _, err := t.c.Exec(ctx, `UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1`, t.headSeq, t.headHash); err != nil {
				return false, fmt.Errorf("store: audit: advance chain head: %w", t.s.mapErr(err))
			}
			t.headDirty = false
		}
		return false, nil
	}
	t.headDirty = false // every path below stores the head after these events
	d := t.s.d
	if !t.headLoaded && d.WriteCTE && len(t.pending) <= smallFlush {
		return t.flushChainInSQL(ctx, commit) // the head locked last, for one statement (scim_auditchain.go)
	}
	if err := t.lockHead(ctx); err != nil {
		return false, err
	}
	// A large flush seals each event during the COPY (bulkInsertFunc: the
	// hashing overlaps the server's inserts).
	row := func(i int) []any { return t.sealRow(&t.pending[i]) }
	if d.WriteCTE && len(t.pending) <= smallFlush {
		rows := make([][]any, len(t.pending))
		for i := range rows {
			rows[i] = row(i)
		}
		// The events and the new head in one statement: one round trip
		// instead of COPY's two and the UPDATE's one (an interactive write,
		// e.g. a SCIM request or a first case access, writes one event).
		var b strings.Builder
		args := make([]any, 0, len(rows)*len(auditColList)+2)
		b.WriteString("WITH ins AS (INSERT INTO audit_events (" + auditCols + ") VALUES ")
		ph := placeholders(len(auditColList))
		for i, r := range rows {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(ph)
			args = append(args, r...)
		}
		b.WriteString(") UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1")
		args = append(args, t.headSeq, t.headHash)
		if ec, ok := t.raw.(ExecCommitter); ok && commit {
			if err := ec.ExecCommit(ctx, d.rebind(b.String()), args...); err != nil {
				return false, fmt.Errorf("store: audit: write events and commit: %w", t.s.mapErr(err))
			}
			t.pending = t.pending[:0]
			return true, nil
		}
		if _, err := t.c.Exec(ctx, b.String(), args...); err != nil {
			return false, fmt.Errorf("store: audit: write events: %w", t.s.mapErr(err))
		}
		t.pending = t.pending[:0]
		return false, nil
	}
	if err := t.bulkInsertFunc(ctx, "audit_events", auditColList, len(t.pending), row); err != nil {
		return false, fmt.Errorf("store: audit: write events: %w", t.s.mapErr(err))
	}
	if _, err := t.c.Exec(ctx, `UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1`, t.headSeq, t.headHash); err != nil {
		return false, fmt.Errorf("store: audit: advance chain head: %w", t.s.mapErr(err))
	}
	t.pending = t.pending[:0]
	return false, nil
}

// writeEvents appends n events, made on demand by ev (in order), to the
// chain after the buffered ones, for bulk writes: with COPY, making an
// event (e.g. marshalling the object) and sealing it happen while the
// events before it stream to the server (bulkInsertFunc), instead of before
// the whole write. The events are not buffered; the chain head is advanced
// in the same transaction (by its last flush). Not for SCIM group commit
// (scim_batch.go), whose savepoints restore the head fields but not
// headDirty.
func (t *txn) writeEvents(ctx context.Context, n int, ev func(i int) audit.Event) error {
	if n == 0 {
		return nil
	}
	if err := t.flushAudit(ctx); err != nil { // the buffered events come first
		return err
	}
	if err := t.lockHead(ctx); err != nil {
		return err
	}
	row := func(i int) []any {
		e := ev(i)
		e.Time, e.Actor, e.RunID, e.RequestID = t.s.nowUTC(), t.meta.Actor, t.meta.RunID, t.meta.RequestID
		return t.sealRow(&e)
	}
	if err := t.bulkInsertFunc(ctx, "audit_events", auditColList, n, row); err != nil {
		return fmt.Errorf("store: audit: write events: %w", t.s.mapErr(err))
	}
	// The head row is stored once, by the transaction's last flush
	// (headDirty), not after every bulk chunk.
	t.headDirty = true
	return nil
}

// lockHead reads the chain head into the transaction, locking its row
// for the rest of the transaction (once).
func (t *txn) lockHead(ctx context.Context) error {
	if t.headLoaded {
		return nil
	}
	err := t.c.QueryRow(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`+t.s.d.ForUpdate).Scan(&t.headSeq, &t.headHash)
	if err != nil {
		return fmt.Errorf("store: audit: lock chain head: %w", t.s.mapErr(err))
	}
	t.headLoaded = true
	return nil
}

// sealRow seals e after the transaction's chain head, which it advances to
// e, and returns e's audit_events row (auditColList). Events are sealed in
// order; with COPY it runs on pgx's encoding goroutine while the caller
// waits (Copier), and a failed write fails the transaction, head included.
func (t *txn) sealRow(e *audit.Event) []any {
	audit.Seal(e, t.headSeq, t.headHash)
	t.headSeq, t.headHash = e.Seq, e.Hash
	return []any{e.Seq, t.s.d.Time(e.Time), e.Actor, e.Action, e.ObjectType, e.ObjectID,
		jarg(e.Before), jarg(e.After), e.RunID, e.RequestID, e.PrevHash, e.Hash}
}

// execLockingHead runs a data-modifying statement (INSERT, UPDATE or
// DELETE without RETURNING) whose change the transaction audits, taking
// the audit chain head lock in the same statement where the dialect runs
// writes inside WITH (PostgreSQL): the flush then skips its lock round
// trip. It returns the rows affected. Meant for a transaction's one write
// (a first case access): the head stays locked from here to the commit.
func (t *txn) execLockingHead(ctx context.Context, q string, args ...any) (int64, error) {
	if !t.s.d.WriteCTE || t.headLoaded {
		return t.c.Exec(ctx, q, args...)
	}
	var n int64
	err := t.c.QueryRow(ctx, `WITH w AS (`+q+` RETURNING 1)
SELECT h.seq, h.hash, (SELECT COUNT(*) FROM w) FROM audit_head h WHERE h.id = 1 FOR UPDATE OF h`, args...).Scan(&t.headSeq, &t.headHash, &n)
	if err != nil {
		return 0, err
	}
	t.headLoaded = true
	return n, nil
}

func scanEvent(rows Rows) (audit.Event, error) {
	var e audit.Event
	err := rows.Scan(&e.Seq, tscan{&e.Time}, &e.Actor, &e.Action, &e.ObjectType, &e.ObjectID,
		jscan{(*[]byte)(&e.Before)}, jscan{(*[]byte)(&e.After)}, &e.RunID, &e.RequestID, &e.PrevHash, &e.Hash)
	return e, err
}

// Audit reads events in sequence order.
func (s *Store) Audit(ctx context.Context, f store.AuditFilter, fn func(audit.Event) error) error {
	var where []string
	var args []any
	add := func(cond string, v any) { where = append(where, cond); args = append(args, v) }
	if f.ObjectID != "" {
		add("object_id = ?", f.ObjectID)
	}
	if f.Actor != "" {
		add("actor = ?", f.Actor)
	}
	if f.Action != "" {
		add("action = ?", f.Action)
	}
	if !f.Since.IsZero() {
		add("at >= ?", s.d.Time(f.Since.UTC()))
	}
	if !f.Until.IsZero() {
		add("at < ?", s.d.Time(f.Until.UTC()))
	}
	if f.AfterSeq > 0 {
		add("seq > ?", f.AfterSeq)
	}
	q := `SELECT ` + auditCols + ` FROM audit_events`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY seq"
	if f.Limit > 0 {
		q += " LIMIT ?"
		args = append(args, f.Limit)
	}
	rows, err := s.c.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("store: audit: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return fmt.Errorf("store: audit: scan: %w", err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: audit: %w", err)
	}
	return nil
}

// VerifyAudit walks the chain in pages up to the chain head read first
// (events commit together with the head, so every event up to it is
// visible), and checks that the log ends exactly at the head, so deleting
// the newest events is detected too.
func (s *Store) VerifyAudit(ctx context.Context) (*audit.Verifier, error) {
	var headSeq int64
	var headHash string
	if err := s.c.QueryRow(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&headSeq, &headHash); err != nil {
		return nil, fmt.Errorf("store: verify audit: read chain head: %w", s.mapErr(err))
	}
	v := audit.NewVerifier()
	var last audit.Event
	const page = 2000
	for {
		rows, err := s.c.Query(ctx, `SELECT `+auditCols+` FROM audit_events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?`,
			last.Seq, headSeq, page)
		if err != nil {
			return nil, fmt.Errorf("store: verify audit: %w", err)
		}
		n := 0
		for rows.Next() {
			e, err := scanEvent(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("store: verify audit: scan: %w", err)
			}
			v.Add(e)
			last = e
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("store: verify audit: %w", err)
		}
		if n < page {
			break
		}
	}
	if headSeq != last.Seq || (headSeq > 0 && headHash != last.Hash) {
		v.Problems = append(v.Problems, audit.Problem{Seq: headSeq,
			Reason: fmt.Sprintf("chain head is event %d but the log ends at event %d (events deleted or edited at the end)", headSeq, last.Seq)})
	}
	// Events past the head: every committed event is at or below the head
	// (they commit together and the head only grows), so one above a head
	// read after it means the head was moved back, and the events after it
	// would go unchecked. The newest event is read before the head.
	var maxSeq, nowHead int64
	if err := s.c.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM audit_events`).Scan(&maxSeq); err != nil {
		return nil, fmt.Errorf("store: verify audit: read the newest event: %w", s.mapErr(err))
	}
	if err := s.c.QueryRow(ctx, `SELECT seq FROM audit_head WHERE id = 1`).Scan(&nowHead); err != nil {
		return nil, fmt.Errorf("store: verify audit: read chain head: %w", s.mapErr(err))
	}
	if maxSeq > nowHead {
		v.Problems = append(v.Problems, audit.Problem{Seq: nowHead + 1,
			Reason: fmt.Sprintf("events %d to %d are after the chain head (event %d): the head was moved back, they are not verified", nowHead+1, maxSeq, nowHead)})
	}
	return v, nil
}
