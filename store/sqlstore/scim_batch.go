package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/store"
)

// Group commit for SCIM writes on SQLite.
//
// SQLite has one writer: every write transaction holds the single write
// connection from BEGIN IMMEDIATE to COMMIT, and under an identity
// provider's concurrent pushes the writes queue behind it. SCIMUpdate runs
// the writes that arrive while one is running in the same SQLite
// transaction, one after another, each inside its own SAVEPOINT, and
// commits them together: one BEGIN and one COMMIT (WAL frames of the audit
// log's and indexes' shared pages written once) for the batch, and no
// hand-over of the write connection between them.
//
// What each caller sees is unchanged:
//   - its fn runs atomically: when fn (or the write of its audit events)
//     fails, ROLLBACK TO its savepoint undoes exactly its changes, the
//     chain head in memory goes back with them, and it gets its error while
//     the others carry on;
//   - its audit events are chained and written inside its savepoint, in the
//     transaction that makes its change; the batch's events form one
//     unbroken chain in the order the requests ran;
//   - it returns only after COMMIT; when COMMIT (or a savepoint statement)
//     fails, every request of the batch gets the error and nothing of the
//     batch is stored.
//
// fn runs on the goroutine of the batch's leader (the request that found no
// batch running) with its own context's values but without its
// cancellation: an interrupted SQLite write statement would roll back the
// whole shared transaction. A request whose context is done before its
// turn is not run and gets the context's error. A panic in fn is re-raised in the caller's
// goroutine after the batch (its savepoint rolled back).
//
// On PostgreSQL, whose writers run in parallel, SCIMUpdate is Update.

// batchMax bounds the requests of one batch (and so the wait of its first).
const batchMax = 32

type batchReq struct {
	ctx  context.Context
	m    audit.Meta
	fn   func(ctx context.Context, tx store.Tx) error
	done chan batchResult // buffered: the leader never blocks on it
}

type batchResult struct {
	err      error
	panicked bool
	panicVal any
	lead     bool // the request leads the next batch instead
}

// batcher queues the SCIM writes that arrive while a batch runs.
type batcher struct {
	mu      sync.Mutex
	active  bool
	queue   []*batchReq
	commits int64 // batches committed (TestingSCIMBatches)
}

// SCIMUpdate is Update for the SCIM server's writes: on SQLite, concurrent
// calls are committed together (see above).
func (s *Store) SCIMUpdate(ctx context.Context, m audit.Meta, fn func(ctx context.Context, tx store.Tx) error) error {
	if s.d.Name != "sqlite" {
		return s.Update(ctx, m, fn)
	}
	if m.Actor == "" {
		return errors.New("store: update: audit meta has no actor")
	}
	r := &batchReq{ctx: ctx, m: m, fn: fn, done: make(chan batchResult, 1)}
	b := &s.batch
	b.mu.Lock()
	if b.active {
		b.queue = append(b.queue, r)
		b.mu.Unlock()
		res := <-r.done
		if !res.lead {
			if res.panicked {
				panic(res.panicVal)
			}
			return res.err
		}
	} else {
		b.active = true
		b.mu.Unlock()
	}
	res := s.leadBatch(r)
	if res.panicked {
		panic(res.panicVal)
	}
	return res.err
}

// leadBatch runs first and the requests queued behind it in one
// transaction, hands the lead to the next queued request (if any), and
// delivers the results; it returns first's.
func (s *Store) leadBatch(first *batchReq) batchResult {
	reqs := []*batchReq{first}
	var res []batchResult
	var fatal error // the transaction as a whole failed
	c, err := s.db.Begin(context.WithoutCancel(first.ctx))
	if err != nil {
		fatal = fmt.Errorf("store: begin: %w", err)
	}
	var t *txn
	if fatal == nil {
		t = &txn{reader: reader{s: s, c: dconn{c: c, d: s.d}, inTx: true}, raw: c}
	}
	ok := 0
	for i := 0; fatal == nil; i++ {
		if i == len(reqs) {
			s.batch.mu.Lock()
			n := min(len(s.batch.queue), batchMax-len(reqs))
			reqs = append(reqs, s.batch.queue[:n]...)
			s.batch.queue = s.batch.queue[n:]
			s.batch.mu.Unlock()
			if i == len(reqs) {
				break
			}
		}
		r, e := s.runSavepoint(t, reqs[i])
		if e != nil {
			fatal = e
			break
		}
		res = append(res, r)
		if r.err == nil && !r.panicked {
			ok++
		}
	}
	if fatal == nil && ok > 0 {
		if err := c.Commit(context.WithoutCancel(first.ctx)); err != nil {
			fatal = fmt.Errorf("store: commit: %w", s.mapErr(err))
		} else {
			s.batch.mu.Lock()
			s.batch.commits++
			s.batch.mu.Unlock()
		}
	} else if c != nil {
		_ = c.Rollback(context.WithoutCancel(first.ctx))
	}
	if fatal != nil {
		// Nothing of the batch is stored: every request fails (a panic
		// stays a panic).
		for len(res) < len(reqs) {
			res = append(res, batchResult{})
		}
		for i := range res {
			if !res[i].panicked {
				res[i].err = fatal
			}
		}
	}
	s.batch.mu.Lock()
	if len(s.batch.queue) > 0 {
		next := s.batch.queue[0]
		s.batch.queue = s.batch.queue[1:]
		s.batch.mu.Unlock()
		next.done <- batchResult{lead: true}
	} else {
		s.batch.active = false
		s.batch.mu.Unlock()
	}
	for i, r := range reqs[1:] {
		r.done <- res[i+1]
	}
	return res[0]
}

// runSavepoint runs one request inside a savepoint of the batch's
// transaction. The error it returns is fatal to the batch (a savepoint
// statement failed); the request's own outcome is in the result.
func (s *Store) runSavepoint(t *txn, r *batchReq) (batchResult, error) {
	if err := r.ctx.Err(); err != nil {
		// Its caller gave up while it waited: it is not run.
		return batchResult{err: fmt.Errorf("store: update: %w", err)}, nil
	}
	ctx := context.WithoutCancel(r.ctx)
	if _, err := t.raw.Exec(ctx, "SAVEPOINT scim_request"); err != nil {
		return batchResult{}, fmt.Errorf("store: savepoint: %w", err)
	}
	// The batch shares one txn: what it keeps per request (the audit meta
	// and buffer, and the chain head, which a rollback takes back) is set
	// and restored here; a field added to txn that caches what a request
	// wrote must be reset here too.
	t.meta = r.m
	t.pending = t.pending[:0]
	headLoaded, headSeq, headHash := t.headLoaded, t.headSeq, t.headHash
	res := callFn(ctx, t, r.fn)
	if res.err == nil && !res.panicked {
		res.err = t.flushAudit(ctx)
	}
	if res.err != nil || res.panicked {
		if _, err := t.raw.Exec(ctx, "ROLLBACK TO scim_request"); err != nil {
			return batchResult{}, fmt.Errorf("store: roll back to savepoint: %w", err)
		}
		t.pending = t.pending[:0]
		t.headLoaded, t.headSeq, t.headHash = headLoaded, headSeq, headHash
	}
	if _, err := t.raw.Exec(ctx, "RELEASE scim_request"); err != nil {
		return batchResult{}, fmt.Errorf("store: release savepoint: %w", err)
	}
	return res, nil
}

func callFn(ctx context.Context, t *txn, fn func(ctx context.Context, tx store.Tx) error) (res batchResult) {
	defer func() {
		if v := recover(); v != nil {
			res = batchResult{panicked: true, panicVal: v}
		}
	}()
	return batchResult{err: fn(ctx, t)}
}

// TestingSCIMBatches tells how many SCIMUpdate calls wait behind a running
// batch and how many batches have committed (conformance suite only: a
// test holds a batch open until the writes it races have queued, without
// sleeping, and checks that they committed together).
func (s *Store) TestingSCIMBatches() (queued int, committed int64) {
	s.batch.mu.Lock()
	defer s.batch.mu.Unlock()
	return len(s.batch.queue), s.batch.commits
}
