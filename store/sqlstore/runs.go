package sqlstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

const runSelect = `SELECT id, job, trigger_kind, status, started_at, finished_at, counts, error, plan_hash, plan FROM runs`

func (r *reader) queryRuns(ctx context.Context, tail string, args ...any) ([]directory.Run, error) {
	rows, err := r.c.Query(ctx, runSelect+" "+tail, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []directory.Run
	for rows.Next() {
		var run directory.Run
		var status string
		var counts []byte
		if err := rows.Scan(&run.ID, &run.Job, &run.Trigger, &status, tscan{&run.StartedAt}, ntscan{&run.FinishedAt},
			jscan{&counts}, &run.Error, &run.PlanHash, jscan{(*[]byte)(&run.Plan)}); err != nil {
			return nil, err
		}
		run.Status = directory.RunStatus(status)
		if len(counts) > 0 {
			if err := json.Unmarshal(counts, &run.Counts); err != nil {
				return nil, err
			}
		}
		out = append(out, run)
	}
	return out, rows.Err()
}

// GetRun returns a run.
// In a transaction it locks the run's row until the end (PostgreSQL; SQLite
// has one writer), so a read-check-update of a run's status is atomic
// (reconcile's approval: held to running, once).
func (r *reader) GetRun(ctx context.Context, id string) (directory.Run, error) {
	rs, err := r.queryRuns(ctx, "WHERE id = ?"+r.forUpdate(), id)
	if err != nil {
		return directory.Run{}, fmt.Errorf("store: get run %q: %w", id, err)
	}
	if len(rs) == 0 {
		return directory.Run{}, fmt.Errorf("store: get run %q: %w", id, store.ErrNotFound)
	}
	return rs[0], nil
}

// ListRuns selects runs newest first.
func (r *reader) ListRuns(ctx context.Context, q store.RunQuery) ([]directory.Run, error) {
	var conds []string
	var args []any
	if q.Job != "" {
		conds, args = append(conds, "job = ?"), append(args, q.Job)
	}
	if q.Status != "" {
		conds, args = append(conds, "status = ?"), append(args, string(q.Status))
	}
	if !q.Before.IsZero() {
		conds, args = append(conds, "started_at < ?"), append(args, r.s.d.Time(q.Before.UTC()))
	}
	tail := ""
	if len(conds) > 0 {
		tail = "WHERE " + strings.Join(conds, " AND ")
	}
	rs, err := r.queryRuns(ctx, tail+" ORDER BY started_at DESC, id DESC LIMIT ?", append(args, sqlLimit(q.Limit))...)
	if err != nil {
		return nil, fmt.Errorf("store: list runs: %w", err)
	}
	return rs, nil
}

// ListRunItems pages a run's items in Seq order.
func (r *reader) ListRunItems(ctx context.Context, q store.RunItemQuery) ([]directory.RunItem, error) {
	tail := "WHERE run_id = ? AND seq > ?"
	args := []any{q.RunID, q.AfterSeq}
	if q.Action != "" {
		tail += " AND action = ?"
		args = append(args, q.Action)
	}
	rows, err := r.c.Query(ctx, `SELECT run_id, seq, action, object_type, object_id, reason, before_json, after_json FROM run_items `+
		tail+" ORDER BY seq LIMIT ?", append(args, sqlLimit(q.Limit))...)
	if err != nil {
		return nil, fmt.Errorf("store: list items of run %q: %w", q.RunID, err)
	}
	defer rows.Close()
	var out []directory.RunItem
	for rows.Next() {
		var it directory.RunItem
		if err := rows.Scan(&it.RunID, &it.Seq, &it.Action, &it.ObjectType, &it.ObjectID, &it.Reason,
			jscan{(*[]byte)(&it.Before)}, jscan{(*[]byte)(&it.After)}); err != nil {
			return nil, fmt.Errorf("store: list items of run %q: %w", q.RunID, err)
		}
		out = append(out, it)
	}
	return out, rows.Err()
}

func countsArg(c map[string]int64) any {
	if len(c) == 0 {
		return nil
	}
	b, _ := json.Marshal(c)
	return string(b)
}

// CreateRun inserts a run (run.create).
func (t *txn) CreateRun(ctx context.Context, r *directory.Run) error {
	if r.Job == "" {
		return fmt.Errorf("store: create run: empty job")
	}
	if r.ID == "" {
		r.ID = uuid.NewString()
	}
	if r.Status == "" {
		r.Status = directory.RunRunning
	}
	if r.StartedAt.IsZero() {
		r.StartedAt = t.s.nowUTC()
	}
	r.StartedAt = r.StartedAt.UTC().Truncate(time.Microsecond)
	plan, err := canonicalJSON(r.Plan)
	if err != nil {
		return fmt.Errorf("store: create run: plan: %w", err)
	}
	r.Plan = plan
	if _, err := t.c.Exec(ctx, `INSERT INTO runs (id, job, trigger_kind, status, started_at, finished_at, counts, error, plan_hash, plan)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, r.ID, r.Job, r.Trigger, string(r.Status), t.s.d.Time(r.StartedAt), t.optTime(r.FinishedAt),
		countsArg(r.Counts), r.Error, r.PlanHash, jarg(r.Plan)); err != nil {
		return fmt.Errorf("store: create run %q: %w", r.Job, t.s.mapErr(err))
	}
	return t.record(ctx, "run.create", "run", r.ID, nil, audit.Marshal(r))
}

func (t *txn) optTime(p *time.Time) any {
	if p == nil {
		return nil
	}
	return t.s.d.Time(p.UTC().Truncate(time.Microsecond))
}

// UpdateRun updates status, finish time, counts, error and plan (run.update).
func (t *txn) UpdateRun(ctx context.Context, r *directory.Run) error {
	op := fmt.Sprintf("update run %q", r.ID)
	cur, err := t.queryRuns(ctx, "WHERE id = ?"+t.forUpdate(), r.ID)
	if err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	if len(cur) == 0 {
		return fmt.Errorf("store: %s: %w", op, store.ErrNotFound)
	}
	c := cur[0]
	plan, err := canonicalJSON(r.Plan)
	if err != nil {
		return fmt.Errorf("store: %s: plan: %w", op, err)
	}
	r.Plan = plan
	if r.FinishedAt != nil {
		f := r.FinishedAt.UTC().Truncate(time.Microsecond)
		r.FinishedAt = &f
	}
	r.Job, r.Trigger, r.StartedAt = c.Job, c.Trigger, c.StartedAt
	sameFinish := (c.FinishedAt == nil && r.FinishedAt == nil) || (c.FinishedAt != nil && r.FinishedAt != nil && c.FinishedAt.Equal(*r.FinishedAt))
	if c.Status == r.Status && sameFinish && maps.Equal(c.Counts, r.Counts) && c.Error == r.Error && c.PlanHash == r.PlanHash && bytes.Equal(c.Plan, r.Plan) {
		return nil
	}
	if _, err := t.c.Exec(ctx, `UPDATE runs SET status = ?, finished_at = ?, counts = ?, error = ?, plan_hash = ?, plan = ? WHERE id = ?`,
		string(r.Status), t.optTime(r.FinishedAt), countsArg(r.Counts), r.Error, r.PlanHash, jarg(r.Plan), r.ID); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	return t.record(ctx, "run.update", "run", r.ID, audit.Marshal(c), audit.Marshal(r))
}

// AddRunItems appends items to runs (not audited: the items are the run's
// report, and the audit log already holds every change they describe).
// Items with Seq 0 are numbered after the run's last item.
func (t *txn) AddRunItems(ctx context.Context, items []directory.RunItem) error {
	if len(items) == 0 {
		return nil
	}
	// Each run must exist. Its row is locked FOR KEY SHARE (what the foreign
	// key's trigger did before PostgreSQL migration 0052 replaced the key with
	// this check) in the statement that reads its last item number.
	lock := ""
	if t.s.d.Name == "postgres" {
		lock = " FOR KEY SHARE OF r"
	}
	next := map[string]int64{}
	for i := range items {
		it := &items[i]
		n, ok := next[it.RunID]
		if !ok {
			err := t.c.QueryRow(ctx, `SELECT (SELECT COALESCE(MAX(i.seq), 0) FROM run_items i WHERE i.run_id = r.id) FROM runs r WHERE r.id = ?`+lock, it.RunID).Scan(&n)
			if err != nil {
				return fmt.Errorf("store: add run items: run %q: %w", it.RunID, t.s.mapErr(err))
			}
		}
		if it.Seq != 0 {
			next[it.RunID] = max(n, it.Seq)
			continue
		}
		n++
		it.Seq, next[it.RunID] = n, n
	}
	row := func(i int) []any {
		it := &items[i]
		return []any{it.RunID, it.Seq, it.Action, it.ObjectType, it.ObjectID, it.Reason, jarg(it.Before), jarg(it.After)}
	}
	if err := t.bulkInsertFunc(ctx, "run_items", []string{"run_id", "seq", "action", "object_type", "object_id", "reason", "before_json", "after_json"}, len(items), row); err != nil {
		return fmt.Errorf("store: add run items: %w", t.s.mapErr(err))
	}
	return nil
}

// GetCursor returns a source's sync cursor; ErrNotFound when unset.
func (r *reader) GetCursor(ctx context.Context, source string) (string, error) {
	var v string
	if err := r.c.QueryRow(ctx, `SELECT value FROM cursors WHERE source = ?`, source).Scan(&v); err != nil {
		return "", fmt.Errorf("store: get cursor %q: %w", source, r.s.mapErr(err))
	}
	return v, nil
}

type cursorValue struct {
	Value string `json:"value"`
}

// SetCursor stores a source's sync cursor (cursor.set: a cursor decides
// what the next delta sync sees, so moving it is audited).
func (t *txn) SetCursor(ctx context.Context, source, value string) error {
	op := fmt.Sprintf("set cursor %q", source)
	var cur string
	err := t.c.QueryRow(ctx, `SELECT value FROM cursors WHERE source = ?`+t.forUpdate(), source).Scan(&cur)
	var before json.RawMessage
	switch {
	case err == nil && cur == value:
		return nil
	case err == nil:
		before = audit.Marshal(cursorValue{cur})
	case !errors.Is(err, ErrNoRows):
		return fmt.Errorf("store: %s: %w", op, err)
	}
	if _, err := t.c.Exec(ctx, `INSERT INTO cursors (source, value, updated_at) VALUES (?, ?, ?)
ON CONFLICT (source) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`, source, value, t.s.d.Time(t.s.nowUTC())); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	return t.record(ctx, "cursor.set", "cursor", source, before, audit.Marshal(cursorValue{value}))
}
