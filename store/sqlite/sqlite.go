package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"slices"
	"time"

	"go.uber.org/zap"
	sqlite3 "modernc.org/sqlite"
	sqlite3lib "modernc.org/sqlite/lib"

	"github.com/dirsyncd/dirsyncd/store/sqlstore"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the embedded migration files.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return sub
}

// Options configure the SQLite store.
type Options struct {
	Now         func() time.Time // defaults to time.Now
	Logger      *zap.Logger
	Migrations  fs.FS         // overrides the embedded migrations (tests)
	BusyTimeout time.Duration // default 10s: how long a writer waits for the file lock
	MaxReaders  int           // read pool size, default 4
}

// Dialect is the SQLite dialect of sqlstore.
var Dialect = &sqlstore.Dialect{
	Name: "sqlite",
	Time: func(t time.Time) any { return t.UTC().UnixMicro() },
	InList: func(col string, vals []string) (string, any) {
		if vals == nil {
			vals = []string{}
		}
		b, _ := json.Marshal(vals)
		return col + " IN (SELECT value FROM json_each(?))", string(b)
	},
	IsUnique: func(err error) bool {
		var e *sqlite3.Error
		if errors.As(err, &e) {
			c := e.Code()
			return c == sqlite3lib.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3lib.SQLITE_CONSTRAINT_PRIMARYKEY
		}
		return false
	},
	IsForeignKey: func(err error) bool {
		var e *sqlite3.Error
		return errors.As(err, &e) && e.Code() == sqlite3lib.SQLITE_CONSTRAINT_FOREIGNKEY
	},
	MaxRowsPerInsert: 100,
	UserVersionIndex: " INDEXED BY users_id_version_idx", // migration 0060
	// source_links' primary key is an index apart from the table: by it,
	// 100,000 links cost one seek each (0.35 s), by the table 0.11 s.
	NoIndex: " NOT INDEXED",
}

// Page caches: every connection has its own, and a cached 4 KiB page costs
// up to twice its size (modernc.org/memory serves the page plus its header
// from an 8 KiB slot). This memory comes on top of the Go heap, outside
// GOMEMLIMIT. A 100k-user LDAP first full sync fills the writer's cache with
// the bulk load's B-tree pages: with 64 MiB SQLite held 146 MB of the run's
// ~400 MB peak RSS, with 16 MiB 69 MB, at the same wall time, and the SQLite
// bulk upsert benchmark and the SCIM load run moved within their noise
// (BENCHMARKS.md, "LDAP sync", 2026-12-02 morning). Readers keep 16 MiB each:
// 4 MiB saved about 20 MB more in a no-change full sync but may have made
// it slower (2.7 s against 2.4-2.9 s; not resolved). The OS page cache serves
// what a connection's cache misses.
const (
	// WriterCache is the writer connection's page-cache pragma; exported
	// for benchmarks that write beside the store with the same setting
	// (ldapsync's write floor).
	WriterCache = "cache_size(-16384)"
	readerCache = "cache_size(-16384)"
)

// Open opens (creating if needed) the SQLite database at path and returns
// a store over it; call Migrate before use. Writes go through one
// connection whose transactions begin IMMEDIATE (the single writer, which
// also serialises the audit chain); reads use a small pool (WAL mode lets
// them run beside the writer). path ":memory:" gives a private in-memory
// database on a single connection (reads then wait for a running write
// transaction, so do not read through the Store inside Update's fn — use tx).
func Open(ctx context.Context, path string, opts Options) (*sqlstore.Store, error) {
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 10 * time.Second
	}
	if opts.MaxReaders <= 0 {
		opts.MaxReaders = 4
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", opts.BusyTimeout.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "case_sensitive_like(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "temp_store(MEMORY)")
	mem := path == ":memory:"
	wq := url.Values{}
	for k, v := range q {
		wq[k] = slices.Clone(v) // own backing arrays: q gets reader pragmas below
	}
	wq.Set("_txlock", "immediate")
	wq.Add("_pragma", WriterCache)
	file := "file:" + path
	if mem {
		file = "file::memory:"
	}
	w, err := openDB(file + "?" + wq.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %q: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	r := w
	if !mem {
		q.Add("_pragma", readerCache)
		q.Add("_pragma", "query_only(1)")
		r, err = openDB(file + "?" + q.Encode())
		if err != nil {
			_ = w.Close()
			return nil, fmt.Errorf("sqlite: open %q: %w", path, err)
		}
		r.SetMaxOpenConns(opts.MaxReaders)
		r.SetMaxIdleConns(opts.MaxReaders)
	}
	if !mem {
		// WAL (persistent in the file): readers run beside the writer.
		if _, err := w.ExecContext(ctx, "PRAGMA journal_mode = WAL"); err != nil {
			_ = w.Close()
			_ = r.Close()
			return nil, fmt.Errorf("sqlite: open %q: enable WAL: %w", path, err)
		}
	}
	db := &stdDB{w: w, r: r}
	if err := db.Ping(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("sqlite: open %q: %w", path, err)
	}
	migs := opts.Migrations
	if migs == nil {
		migs = Migrations()
	}
	return sqlstore.New(db, Dialect, migs, sqlstore.Options{Now: opts.Now, Logger: opts.Logger}), nil
}

// stdDB adapts database/sql to sqlstore.DB: r for reads, w for writes.
type stdDB struct {
	w, r *sql.DB
}

type queryer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

type stdConn struct{ q queryer }

func (c stdConn) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := c.q.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (c stdConn) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	rows, err := c.q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return stdRows{rows}, nil
}

func (c stdConn) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return stdRow{c.q.QueryRowContext(ctx, query, args...)}
}

type stdRows struct{ *sql.Rows }

func (r stdRows) Close() { _ = r.Rows.Close() }

type stdRow struct{ *sql.Row }

func (r stdRow) Scan(dest ...any) error {
	err := r.Row.Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return sqlstore.ErrNoRows
	}
	return err
}

func (d *stdDB) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	return stdConn{d.w}.Exec(ctx, query, args...)
}

func (d *stdDB) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	return stdConn{d.r}.Query(ctx, query, args...)
}

func (d *stdDB) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return stdConn{d.r}.QueryRow(ctx, query, args...)
}

func (d *stdDB) Begin(ctx context.Context) (sqlstore.TxConn, error) {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return &stdTx{stdConn: stdConn{tx}, tx: tx}, nil
}

func (d *stdDB) Ping(ctx context.Context) error {
	if err := d.w.PingContext(ctx); err != nil {
		return err
	}
	return d.r.PingContext(ctx)
}

func (d *stdDB) Close() error {
	err := d.w.Close()
	if d.r != d.w {
		err = errors.Join(err, d.r.Close())
	}
	return err
}

type stdTx struct {
	stdConn
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
}

// Statement cache: bulk writes run the same multi-row INSERT many times in
// one transaction, and SQLite parsing a statement of hundreds of
// placeholders costs about a tenth of a bulk load. Statements with many
// arguments are prepared once per transaction (database/sql closes them at
// commit or rollback); the cache is bounded so ad-hoc statements cannot grow it.
// It complements the per-connection cache (stmtcache.go), which leaves long
// texts such as these multi-row INSERTs alone.
const (
	cacheMinArgs  = 16
	cacheMaxStmts = 32
)

func (t *stdTx) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	st := t.stmts[query]
	if st == nil && len(args) >= cacheMinArgs && len(t.stmts) < cacheMaxStmts {
		var err error
		if st, err = t.tx.PrepareContext(ctx, query); err != nil {
			return 0, err
		}
		if t.stmts == nil {
			t.stmts = make(map[string]*sql.Stmt)
		}
		t.stmts[query] = st
	}
	if st == nil {
		return t.stdConn.Exec(ctx, query, args...)
	}
	res, err := st.ExecContext(ctx, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t *stdTx) Commit(context.Context) error   { return t.tx.Commit() }
func (t *stdTx) Rollback(context.Context) error { return t.tx.Rollback() }
