package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"go.uber.org/zap"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/store"
)

// Options configure a Store.
type Options struct {
	Now    func() time.Time // defaults to time.Now
	Logger *zap.Logger      // defaults to a no-op logger
}

// Store implements store.Store over a DB and a Dialect.
type Store struct {
	reader
	db         DB
	d          *Dialect
	now        func() time.Time
	log        *zap.Logger
	migrations fs.FS
	batch      batcher // SCIM group commit (scim_batch.go)
}

var _ store.Store = (*Store)(nil)

// New returns a Store over db. migrations holds the backend's numbered
// NNNN_name.sql files (applied by Migrate).
func New(db DB, d *Dialect, migrations fs.FS, opts Options) *Store {
	s := &Store{db: db, d: d, now: opts.Now, log: opts.Logger, migrations: migrations}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.log = s.log.Named("store")
	s.reader = reader{s: s, c: dconn{c: db, d: d}}
	return s
}

// DB returns the underlying pool adapter (for backend tests).
func (s *Store) DB() DB { return s.db }

// Dialect returns the store's dialect name ("sqlite" or "postgres").
func (s *Store) Dialect() string { return s.d.Name }

// TestingExecRaw runs raw SQL outside any transaction, bypassing the audit
// log. It exists for the conformance suite (tamper and failure injection)
// and must not be used by application code.
func (s *Store) TestingExecRaw(ctx context.Context, query string) error {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, query); err != nil {
		_ = tx.Rollback(ctx)
		return err
	}
	return tx.Commit(ctx)
}

// TestingSetNow replaces the clock (conformance suite only; not safe
// while the store is in use).
func (s *Store) TestingSetNow(now func() time.Time) { s.now = now }

func (s *Store) nowUTC() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// Ping checks the database connection.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.Ping(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Close closes the pool.
func (s *Store) Close() error { return s.db.Close() }

// Update runs fn in one transaction whose audit events carry m.
func (s *Store) Update(ctx context.Context, m audit.Meta, fn func(ctx context.Context, tx store.Tx) error) (err error) {
	if m.Actor == "" {
		return errors.New("store: update: audit meta has no actor")
	}
	c, err := s.db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	t := &txn{reader: reader{s: s, c: dconn{c: c, d: s.d}, inTx: true}, raw: c, meta: m}
	done := false
	defer func() {
		if !done {
			_ = c.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if err := fn(ctx, t); err != nil {
		return err
	}
	committed, err := t.flushAndCommit(ctx)
	if err != nil {
		return err
	}
	if !committed {
		if err := c.Commit(ctx); err != nil {
			return fmt.Errorf("store: commit: %w", s.mapErr(err))
		}
	}
	done = true
	return nil
}

// mapErr maps driver errors to the store's sentinels.
func (s *Store) mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNoRows):
		return store.ErrNotFound
	case s.d.IsUnique(err):
		return fmt.Errorf("%w (%v)", store.ErrConflict, err)
	case s.d.IsForeignKey(err):
		return fmt.Errorf("%w: a referenced object does not exist (%v)", store.ErrNotFound, err)
	}
	return err
}

// AcquireLease takes or renews the lease (not audited: bookkeeping).
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if name == "" || holder == "" {
		return false, errors.New("store: acquire lease: empty name or holder")
	}
	now := s.nowUTC()
	var ok bool
	err := s.writeTx(ctx, func(c Conn) error {
		n, err := c.Exec(ctx, `INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE leases.holder = excluded.holder OR leases.expires_at <= ?`,
			name, holder, s.d.Time(now.Add(ttl)), s.d.Time(now))
		ok = n == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: acquire lease %q: %w", name, err)
	}
	return ok, nil
}

// ReleaseLease gives the lease up if holder has it.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	err := s.writeTx(ctx, func(c Conn) error {
		_, err := c.Exec(ctx, `DELETE FROM leases WHERE name = ? AND holder = ?`, name, holder)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: release lease %q: %w", name, err)
	}
	return nil
}

// writeTx runs an unaudited write in its own transaction.
func (s *Store) writeTx(ctx context.Context, fn func(c Conn) error) error {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(dconn{c: tx, d: s.d}); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	return tx.Commit(ctx)
}

// reader implements store.Reader over a Conn (the pool or a transaction).
type reader struct {
	s    *Store
	c    Conn
	inTx bool
}

func (r *reader) forUpdate() string {
	if r.inTx {
		return r.s.d.ForUpdate
	}
	return ""
}

func (r *reader) forShare() string {
	if r.inTx {
		return r.s.d.ForShare
	}
	return ""
}

// txn implements store.Tx. SCIM group commit (scim_batch.go) runs several
// requests in one txn: state kept per request must be reset in runSavepoint.
type txn struct {
	reader
	raw        TxConn // the transaction without rebinding (for Copier)
	meta       audit.Meta
	pending    []audit.Event
	headLoaded bool
	headDirty  bool // headSeq/headHash are past the stored head row (writeEvents)
	headSeq    int64
	headHash   string
}

var _ store.Tx = (*txn)(nil)
