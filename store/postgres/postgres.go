package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/dirsyncd/dirsyncd/store/sqlstore"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the embedded migration files.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // embedded at build time
	}
	return sub
}

// Options configure the PostgreSQL store.
type Options struct {
	Now    func() time.Time // defaults to time.Now
	Logger *zap.Logger
	// Migrations overrides the embedded migrations (tests).
	Migrations fs.FS
	// ConnectTimeout bounds how long Open keeps retrying to reach the
	// server (default 30s); the retries back off from 100ms to 2s.
	ConnectTimeout time.Duration
	MaxConns       int32 // pool size; 0 = pgxpool's default
}

// advisoryLockKey serialises migrations across processes ("dirsyncd").
const advisoryLockKey = 0x64697273796e63

// Dialect is the PostgreSQL dialect of sqlstore.
var Dialect = &sqlstore.Dialect{
	Name:          "postgres",
	Numbered:      true,
	ForUpdate:     " FOR UPDATE",
	ForShare:      " FOR SHARE",
	MigrationLock: fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", advisoryLockKey),
	Time:          func(t time.Time) any { return t.UTC() },
	InList: func(col string, vals []string) (string, any) {
		if vals == nil {
			vals = []string{}
		}
		return col + " = ANY(?)", vals
	},
	IsUnique:         func(err error) bool { return sqlState(err) == "23505" },
	IsForeignKey:     func(err error) bool { return sqlState(err) == "23503" },
	MaxRowsPerInsert: 1000,
	WriteCTE:         true,
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// Open connects to PostgreSQL, retrying with backoff until
// opts.ConnectTimeout, and returns a store; call Migrate before use.
// Errors name the host and database, never the password.
func Open(ctx context.Context, dsn string, opts Options) (*sqlstore.Store, error) {
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 30 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("postgres")
	secret := dsnPassword(dsn)
	scrub := func(err error) error {
		if err == nil {
			return nil
		}
		msg := err.Error()
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, "xxxxx")
			msg = strings.ReplaceAll(msg, url.QueryEscape(secret), "xxxxx")
		}
		return errors.New(msg)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse DSN: %w", scrub(err))
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	target := fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect %s: %w", target, scrub(err))
	}
	deadline := time.Now().Add(opts.ConnectTimeout)
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, max(time.Until(deadline), time.Second))
		err = pool.Ping(pctx)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil || time.Now().Add(backoff).After(deadline) {
			pool.Close()
			return nil, fmt.Errorf("postgres: connect %s: giving up after %d attempts in %s: %w",
				target, attempt, opts.ConnectTimeout, scrub(err))
		}
		log.Warn("database not reachable yet, retrying", zap.String("target", target), zap.Int("attempt", attempt),
			zap.Duration("backoff", backoff), zap.Error(scrub(err)))
		select {
		case <-ctx.Done():
			pool.Close()
			return nil, fmt.Errorf("postgres: connect %s: %w", target, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
	migs := opts.Migrations
	if migs == nil {
		migs = Migrations()
	}
	return sqlstore.New(&pgDB{pool: pool}, Dialect, migs, sqlstore.Options{Now: opts.Now, Logger: opts.Logger}), nil
}

// dsnPassword extracts the password of a URL or key=value DSN.
func dsnPassword(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok {
			return p
		}
	}
	for _, f := range strings.Fields(dsn) {
		if v, ok := strings.CutPrefix(f, "password="); ok {
			return strings.Trim(v, "'")
		}
	}
	return ""
}

// pgDB adapts pgxpool to sqlstore.DB.
type pgDB struct{ pool *pgxpool.Pool }

type pgQueryer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

type pgConn struct{ q pgQueryer }

// bigList is the length from which an array argument (a bulk read's
// "col = ANY(?)" list) makes a statement run unprepared (planFor).
const bigList = 64

// planFor returns args, prefixed with QueryExecModeExec when one is a long
// list. pgx caches prepared statements, and after five executions
// PostgreSQL may keep a generic plan. For a bulk read by key list the
// generic plan is chosen while the table is still small (a first sync into
// an empty store): a sequential scan comparing every row with every list
// element in turn, reused as the table grows: quadratic (a 100,000-user
// LDAP first sync spent most of its time there). An unnamed statement is
// planned for its values, so the list is a constant: an index scan, or a
// hashed list, whatever the table's size. Planning such a statement costs
// far less than the rows it reads.
func planFor(args []any) []any {
	if unprepared(args) {
		return append([]any{pgx.QueryExecModeExec}, args...)
	}
	return args
}

// unprepared says whether a statement with args runs unprepared (planFor).
func unprepared(args []any) bool {
	for _, a := range args {
		if l, ok := a.([]string); ok && len(l) >= bigList {
			return true
		}
	}
	return false
}

func (c pgConn) Exec(ctx context.Context, sql string, args ...any) (int64, error) {
	if len(args) == 0 { // migrations and raw statements may hold several commands
		args = []any{pgx.QueryExecModeSimpleProtocol}
	} else {
		args = planFor(args)
	}
	tag, err := c.q.Exec(ctx, sql, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (c pgConn) Query(ctx context.Context, sql string, args ...any) (sqlstore.Rows, error) {
	rows, err := c.q.Query(ctx, sql, planFor(args)...)
	if err != nil {
		return nil, err
	}
	return pgRows{rows}, nil
}

func (c pgConn) QueryRow(ctx context.Context, sql string, args ...any) sqlstore.Row {
	return pgRow{c.q.QueryRow(ctx, sql, planFor(args)...)}
}

type pgRows struct{ pgx.Rows }

func (r pgRows) Close() { r.Rows.Close() }

type pgRow struct{ pgx.Row }

func (r pgRow) Scan(dest ...any) error {
	err := r.Row.Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return sqlstore.ErrNoRows
	}
	return err
}

func (d *pgDB) Exec(ctx context.Context, sql string, args ...any) (int64, error) {
	return pgConn{d.pool}.Exec(ctx, sql, args...)
}

func (d *pgDB) Query(ctx context.Context, sql string, args ...any) (sqlstore.Rows, error) {
	return pgConn{d.pool}.Query(ctx, sql, args...)
}

func (d *pgDB) QueryRow(ctx context.Context, sql string, args ...any) sqlstore.Row {
	return pgConn{d.pool}.QueryRow(ctx, sql, args...)
}

func (d *pgDB) Ping(ctx context.Context) error { return d.pool.Ping(ctx) }

func (d *pgDB) Close() error { d.pool.Close(); return nil }

// Begin is in lazytx.go.
