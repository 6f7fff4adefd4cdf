package sqlite

import (
	"container/list"
	"context"
	"database/sql"
	"database/sql/driver"
	"strings"
	"sync"

	sqlite3 "modernc.org/sqlite"
)

// Prepared-statement cache.
//
// database/sql hands modernc.org/sqlite every Query and Exec as SQL text,
// and the driver parses and plans it anew each time: under the SCIM load
// run (cmd/scimload) sqlite3_prepare_v2 was ~30% of the CPU of the whole
// process. stmtConnector wraps the driver's connector so that every
// connection keeps its most recently used single statements prepared and
// reuses them (the driver resets a reused statement when its rows close).
// It changes no behaviour:
//   - multi-statement text (migrations, scripts) is never cached;
//   - a statement whose rows are still open is not reused: the second
//     use of the same text runs uncached, as before;
//   - a statement evicted while its rows are open is closed when they close;
//   - SQLite re-prepares a cached statement by itself when the schema
//     changes (sqlite3_prepare_v2), so migrations need no invalidation.
//
// database/sql never uses a driver connection from two goroutines at once;
// the mutex only guards against a driver that would.

// stmtCacheSize is how many statements each connection keeps prepared. The
// store's statements are a few hundred distinct texts at most (filters
// differ in shape, their values are arguments).
const stmtCacheSize = 256

// stmtCacheMaxLen: longer texts (multi-row INSERTs of bulk loads) are
// prepared per use, as they are rarely repeated.
const stmtCacheMaxLen = 8192

type stmtConnector struct {
	base driver.Connector
	size int
}

func (c stmtConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.base.Connect(ctx)
	if err != nil {
		return nil, err
	}
	ic, ok := conn.(innerConn)
	if !ok || c.size <= 0 {
		return conn, nil
	}
	return &cachedConn{c: ic, size: c.size, m: map[string]*list.Element{}, lru: list.New()}, nil
}

func (c stmtConnector) Driver() driver.Driver { return c.base.Driver() }

// innerConn is what the driver's connection provides and cachedConn
// forwards.
type innerConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

type cachedStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

type stmtEntry struct {
	query   string
	st      cachedStmt
	busy    bool // rows of the last query are open
	evicted bool
}

type cachedConn struct {
	c    innerConn
	size int

	mu  sync.Mutex
	m   map[string]*list.Element // of *stmtEntry; front = most recent
	lru *list.List
}

var _ innerConn = (*cachedConn)(nil)

// openDB is sql.Open("sqlite", dsn) with the statement cache.
func openDB(dsn string) (*sql.DB, error) {
	base, err := sqlite3.NewConnector(dsn)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(stmtConnector{base: base, size: stmtCacheSize}), nil
}

func cacheable(q string) bool {
	return len(q) <= stmtCacheMaxLen && !strings.Contains(q, ";")
}

// acquire returns the prepared statement for q marked busy, or nil when q
// is not cached and cannot be (the caller then runs it uncached).
func (c *cachedConn) acquire(ctx context.Context, q string) (*stmtEntry, error) {
	if !cacheable(q) {
		return nil, nil
	}
	c.mu.Lock()
	if el, ok := c.m[q]; ok {
		e := el.Value.(*stmtEntry)
		if e.busy {
			c.mu.Unlock()
			return nil, nil
		}
		e.busy = true
		c.lru.MoveToFront(el)
		c.mu.Unlock()
		return e, nil
	}
	c.mu.Unlock()
	ds, err := c.c.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	st, ok := ds.(cachedStmt)
	if !ok {
		_ = ds.Close()
		return nil, nil
	}
	e := &stmtEntry{query: q, st: st, busy: true}
	c.mu.Lock()
	c.m[q] = c.lru.PushFront(e)
	var drop []*stmtEntry
	for c.lru.Len() > c.size {
		el := c.lru.Back()
		old := el.Value.(*stmtEntry)
		c.lru.Remove(el)
		delete(c.m, old.query)
		old.evicted = true
		if !old.busy {
			drop = append(drop, old)
		}
	}
	c.mu.Unlock()
	for _, old := range drop {
		_ = old.st.Close()
	}
	return e, nil
}

// release marks e free again (closing it if it was evicted meanwhile).
func (c *cachedConn) release(e *stmtEntry) {
	c.mu.Lock()
	e.busy = false
	closeIt := e.evicted
	c.mu.Unlock()
	if closeIt {
		_ = e.st.Close()
	}
}

func (c *cachedConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	e, err := c.acquire(ctx, q)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return c.c.QueryContext(ctx, q, args)
	}
	rows, err := e.st.QueryContext(ctx, args)
	if err != nil {
		c.release(e)
		return nil, err
	}
	return &cachedRows{Rows: rows, release: func() { c.release(e) }}, nil
}

func (c *cachedConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	e, err := c.acquire(ctx, q)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return c.c.ExecContext(ctx, q, args)
	}
	defer c.release(e)
	return e.st.ExecContext(ctx, args)
}

// Close finalizes the cached statements, then closes the connection.
func (c *cachedConn) Close() error {
	c.mu.Lock()
	var all []*stmtEntry
	for el := c.lru.Front(); el != nil; el = el.Next() {
		e := el.Value.(*stmtEntry)
		e.evicted = true
		if !e.busy {
			all = append(all, e)
		}
	}
	c.m = map[string]*list.Element{}
	c.lru.Init()
	c.mu.Unlock()
	for _, e := range all {
		_ = e.st.Close()
	}
	return c.c.Close()
}

func (c *cachedConn) Prepare(q string) (driver.Stmt, error) { return c.c.Prepare(q) }
func (c *cachedConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	return c.c.PrepareContext(ctx, q)
}

//nolint:staticcheck // driver.Conn requires Begin.
func (c *cachedConn) Begin() (driver.Tx, error) { return c.c.Begin() }
func (c *cachedConn) BeginTx(ctx context.Context, o driver.TxOptions) (driver.Tx, error) {
	return c.c.BeginTx(ctx, o)
}
func (c *cachedConn) Ping(ctx context.Context) error         { return c.c.Ping(ctx) }
func (c *cachedConn) ResetSession(ctx context.Context) error { return c.c.ResetSession(ctx) }
func (c *cachedConn) IsValid() bool                          { return c.c.IsValid() }

// cachedRows releases its statement when closed.
type cachedRows struct {
	driver.Rows
	once    sync.Once
	release func()
}

func (r *cachedRows) Close() error {
	err := r.Rows.Close()
	r.once.Do(r.release)
	return err
}
