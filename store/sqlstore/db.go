package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrNoRows is what an adapter's Row.Scan returns when the query matched no
// row (adapters translate pgx.ErrNoRows and sql.ErrNoRows to it).
var ErrNoRows = errors.New("sqlstore: no rows")

// Rows is a result set.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Row is a single-row result; Scan returns ErrNoRows when there was none.
type Row interface {
	Scan(dest ...any) error
}

// Conn runs statements. SQL uses '?' placeholders; the Store rebinds them
// for the dialect before calling the adapter.
type Conn interface {
	Exec(ctx context.Context, query string, args ...any) (int64, error)
	Query(ctx context.Context, query string, args ...any) (Rows, error)
	QueryRow(ctx context.Context, query string, args ...any) Row
}

// TxConn is a transaction.
type TxConn interface {
	Conn
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// DB is a connection pool: reads run on it directly, writes in Begin.
type DB interface {
	Conn
	Begin(ctx context.Context) (TxConn, error)
	Ping(ctx context.Context) error
	Close() error
}

// Dialect holds what differs between the SQL backends.
type Dialect struct {
	Name string // "sqlite" or "postgres"
	// Numbered rewrites '?' placeholders to $1, $2, ... (PostgreSQL).
	Numbered bool
	// ForUpdate is appended to row reads inside a transaction that precede
	// an update (" FOR UPDATE" on PostgreSQL; SQLite has one writer).
	ForUpdate string
	// ForShare is ForUpdate's shared lock (" FOR SHARE" on PostgreSQL):
	// rows read to check they may be referenced (a live user added to a
	// group) stay as read until commit.
	ForShare string
	// MigrationLock is run first inside the migration transaction.
	MigrationLock string
	// Time encodes a time as a statement argument.
	Time func(time.Time) any
	// InList returns a predicate "col IN <list of vals>" with one argument.
	InList func(col string, vals []string) (string, any)
	// IsUnique and IsForeignKey classify driver errors.
	IsUnique     func(error) bool
	IsForeignKey func(error) bool
	// UserVersionIndex is an index hint for a read of only the users' id,
	// version and deleted_at (SQLite: " INDEXED BY users_id_version_idx",
	// the covering index, a few MB where the table is tens).
	UserVersionIndex string
	// NoIndex makes a read of most of a table's rows scan the table in
	// storage order rather than seek every row from an index (SQLite: " NOT
	// INDEXED"; PostgreSQL's planner chooses for itself).
	NoIndex string
	// MaxRowsPerInsert bounds multi-row INSERT statements.
	MaxRowsPerInsert int
	// WriteCTE: the dialect runs an INSERT inside a WITH clause of another
	// statement (PostgreSQL), so a small audit flush is one round trip.
	WriteCTE bool
}

func (d *Dialect) rebind(q string) string {
	if !d.Numbered || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	inStr := false
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'':
			inStr = !inStr
			b.WriteByte(c)
		case c == '?' && !inStr:
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// dconn rebinds placeholders for the dialect.
type dconn struct {
	c Conn
	d *Dialect
}

func (c dconn) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	return c.c.Exec(ctx, c.d.rebind(q), args...)
}

func (c dconn) Query(ctx context.Context, q string, args ...any) (Rows, error) {
	return c.c.Query(ctx, c.d.rebind(q), args...)
}

func (c dconn) QueryRow(ctx context.Context, q string, args ...any) Row {
	return c.c.QueryRow(ctx, c.d.rebind(q), args...)
}

// tscan scans a time column encoded either as a native timestamp
// (PostgreSQL) or as integer microseconds since the epoch (SQLite).
type tscan struct{ p *time.Time }

func (s tscan) Scan(src any) error {
	t, ok, err := decodeTime(src)
	if err != nil {
		return err
	}
	if ok {
		*s.p = t
	} else {
		*s.p = time.Time{}
	}
	return nil
}

// ntscan scans a nullable time column into a *time.Time.
type ntscan struct{ p **time.Time }

func (s ntscan) Scan(src any) error {
	t, ok, err := decodeTime(src)
	if err != nil {
		return err
	}
	if ok {
		*s.p = &t
	} else {
		*s.p = nil
	}
	return nil
}

func decodeTime(src any) (time.Time, bool, error) {
	switch v := src.(type) {
	case nil:
		return time.Time{}, false, nil
	case time.Time:
		return v.UTC(), true, nil
	case int64:
		return time.UnixMicro(v).UTC(), true, nil
	case string:
		t, err := time.Parse(time.RFC3339Nano, v)
		return t.UTC(), err == nil, err
	}
	return time.Time{}, false, fmt.Errorf("sqlstore: cannot scan %T as time", src)
}

// jscan scans a nullable JSON/text column into raw bytes (nil for NULL).
type jscan struct{ p *[]byte }

func (s jscan) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*s.p = nil
	case []byte:
		*s.p = append([]byte(nil), v...)
	case string:
		*s.p = []byte(v)
	default:
		return fmt.Errorf("sqlstore: cannot scan %T as JSON", src)
	}
	return nil
}

// jarg encodes raw JSON as an argument: NULL when empty.
func jarg(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}

// escapeLike escapes LIKE wildcards with backslash (used with ESCAPE '\').
func escapeLike(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

// placeholders returns "(?,?,?)" for n columns.
func placeholders(n int) string {
	return "(" + strings.TrimSuffix(strings.Repeat("?,", n), ",") + ")"
}

// Copier is implemented by transactions that can bulk-load rows faster than
// multi-row INSERT (PostgreSQL COPY). row(i) returns row i's already-encoded
// arguments, for i = 0 .. n-1 in order. It is called while the rows before
// it stream to the server (on PostgreSQL from pgx's encoding goroutine,
// while CopyFrom waits), so work done in row overlaps the server's; row must
// touch nothing that runs concurrently, and CopyFrom returns only after its
// last call.
type Copier interface {
	CopyFrom(ctx context.Context, table string, cols []string, n int, row func(i int) []any) (int64, error)
}

// ExecCommitter is implemented by transactions that can send their last
// statement and COMMIT together (PostgreSQL: one pipeline, one round trip).
// When the statement fails, COMMIT does not run and the caller rolls back.
type ExecCommitter interface {
	ExecCommit(ctx context.Context, query string, args ...any) error
}

// copyMinRows is the fewest rows bulkInsert sends with COPY. pgx's COPY
// costs three round trips (it first describes the table's columns, then
// starts the copy, then streams), one INSERT costs one: a SCIM create wrote
// its one e-mail row with COPY in 0.67 ms of server time, as much as the
// rest of the request (pg_stat_statements, scimload, 2026-12-02).
const copyMinRows = 16

// useCopy reports whether n rows go to a Copier by COPY.
func useCopy(n int) bool { return n >= copyMinRows }

// bulkInsert inserts rows into table: with COPY when the transaction
// supports it and there are at least copyMinRows rows, else with multi-row
// INSERT statements of at most MaxRowsPerInsert rows. suffix (e.g. an ON
// CONFLICT clause) forces INSERT.
func (t *txn) bulkInsert(ctx context.Context, table string, cols []string, rows [][]any, suffix string) error {
	if len(rows) == 0 {
		return nil
	}
	if cp, ok := t.raw.(Copier); ok && suffix == "" && useCopy(len(rows)) {
		_, err := cp.CopyFrom(ctx, table, cols, len(rows), func(i int) []any { return rows[i] })
		return err
	}
	per := t.s.d.MaxRowsPerInsert
	ph := placeholders(len(cols))
	head := "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES "
	for start := 0; start < len(rows); start += per {
		end := min(start+per, len(rows))
		var b strings.Builder
		b.Grow(len(head) + (end-start)*(len(ph)+1) + len(suffix))
		b.WriteString(head)
		args := make([]any, 0, (end-start)*len(cols))
		for i, r := range rows[start:end] {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(ph)
			args = append(args, r...)
		}
		b.WriteString(suffix)
		if _, err := t.c.Exec(ctx, b.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

// bulkInsertFunc is bulkInsert with rows made on demand, in order: with
// COPY, row(i) runs while the earlier rows are on their way to the server
// (Copier), so the work of making them is not added to the server's.
func (t *txn) bulkInsertFunc(ctx context.Context, table string, cols []string, n int, row func(i int) []any) error {
	if n == 0 {
		return nil
	}
	if cp, ok := t.raw.(Copier); ok && useCopy(n) {
		_, err := cp.CopyFrom(ctx, table, cols, n, row)
		return err
	}
	rows := make([][]any, n)
	for i := range rows {
		rows[i] = row(i)
	}
	return t.bulkInsert(ctx, table, cols, rows, "")
}
