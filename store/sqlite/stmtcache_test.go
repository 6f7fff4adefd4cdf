package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"path/filepath"
	"sync/atomic"
	"testing"

	sqlite3 "modernc.org/sqlite"
)

// countingConnector counts the statements the driver prepares on its
// connections (cachedConn prepares through PrepareContext; uncached runs
// go through QueryContext/ExecContext and count as runs).
type countingConnector struct {
	base              driver.Connector
	prepares, uncache *atomic.Int64
}

func (c countingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.base.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return countingConn{conn.(innerConn), c.prepares, c.uncache}, nil
}

func (c countingConnector) Driver() driver.Driver { return c.base.Driver() }

type countingConn struct {
	innerConn
	prepares, uncached *atomic.Int64
}

func (c countingConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	c.prepares.Add(1)
	return c.innerConn.PrepareContext(ctx, q)
}

func (c countingConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	c.uncached.Add(1)
	return c.innerConn.QueryContext(ctx, q, args)
}

func (c countingConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	c.uncached.Add(1)
	return c.innerConn.ExecContext(ctx, q, args)
}

func openCounting(t *testing.T, size int) (*sql.DB, *atomic.Int64, *atomic.Int64) {
	t.Helper()
	base, err := sqlite3.NewConnector("file:" + filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	var prepares, uncached atomic.Int64
	db := sql.OpenDB(stmtConnector{base: countingConnector{base, &prepares, &uncached}, size: size})
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = db.Close() })
	return db, &prepares, &uncached
}

func count(t *testing.T, db *sql.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func TestStmtCache(t *testing.T) {
	t.Run("a repeated statement is prepared once", func(t *testing.T) {
		db, prepares, uncached := openCounting(t, 8)
		if _, err := db.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 10; i++ {
			if _, err := db.Exec(`INSERT INTO t (v) VALUES (?)`, "x"); err != nil {
				t.Fatal(err)
			}
			if got := count(t, db, `SELECT count(*) FROM t WHERE v = ?`, "x"); got != i+1 {
				t.Fatalf("count after %d inserts = %d", i+1, got)
			}
		}
		if p := prepares.Load(); p != 3 {
			t.Fatalf("prepared %d statements, want 3 (CREATE, INSERT, SELECT)", p)
		}
		if u := uncached.Load(); u != 0 {
			t.Fatalf("%d uncached runs, want 0", u)
		}
	})

	t.Run("multi-statement text is never cached", func(t *testing.T) {
		db, prepares, uncached := openCounting(t, 8)
		if _, err := db.Exec(`CREATE TABLE a (x); CREATE TABLE b (y); INSERT INTO b VALUES (1)`); err != nil {
			t.Fatal(err)
		}
		if got := count(t, db, `SELECT count(*) FROM b`); got != 1 {
			t.Fatalf("the script ran partly: b has %d rows", got)
		}
		if prepares.Load() != 1 || uncached.Load() != 1 {
			t.Fatalf("prepares %d, uncached %d; want 1 (the SELECT) and 1 (the script)", prepares.Load(), uncached.Load())
		}
	})

	t.Run("the same statement inside its own open rows runs uncached", func(t *testing.T) {
		db, _, uncached := openCounting(t, 8)
		db.SetMaxOpenConns(2)
		ctx := context.Background()
		conn, err := db.Conn(ctx) // one connection for both uses
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, `CREATE TABLE t (id INTEGER PRIMARY KEY)`); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 3; i++ {
			if _, err := conn.ExecContext(ctx, `INSERT INTO t (id) VALUES (?)`, i); err != nil {
				t.Fatal(err)
			}
		}
		const q = `SELECT id FROM t WHERE id >= ? ORDER BY id`
		outer, err := conn.QueryContext(ctx, q, 1)
		if err != nil {
			t.Fatal(err)
		}
		var got []int
		for outer.Next() {
			var id int
			if err := outer.Scan(&id); err != nil {
				t.Fatal(err)
			}
			inner, err := conn.QueryContext(ctx, q, id) // same text, outer rows still open
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for inner.Next() {
				n++
			}
			if err := inner.Close(); err != nil {
				t.Fatal(err)
			}
			got = append(got, id*10+n)
		}
		if err := outer.Err(); err != nil {
			t.Fatal(err)
		}
		_ = outer.Close()
		if want := []int{13, 22, 31}; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
			t.Fatalf("nested results %v, want %v", got, want)
		}
		if uncached.Load() != 3 {
			t.Fatalf("%d uncached runs, want 3 (the inner queries)", uncached.Load())
		}
		// Once the outer rows are closed the statement is reused again.
		before := uncached.Load()
		rows, err := conn.QueryContext(ctx, q, 2)
		if err != nil {
			t.Fatal(err)
		}
		_ = rows.Close()
		if uncached.Load() != before {
			t.Fatal("the statement was not reused after its rows closed")
		}
	})

	t.Run("eviction keeps the cache bounded and results right", func(t *testing.T) {
		db, prepares, _ := openCounting(t, 2)
		if _, err := db.Exec(`CREATE TABLE t (v INTEGER)`); err != nil {
			t.Fatal(err)
		}
		qs := []string{`SELECT count(*) FROM t`, `SELECT count(*) + 1 FROM t`, `SELECT count(*) + 2 FROM t`}
		for round := 0; round < 2; round++ {
			for i, q := range qs {
				if got := count(t, db, q); got != i {
					t.Fatalf("%s = %d, want %d", q, got, i)
				}
			}
		}
		// CREATE + 3 SELECTs, then all 3 again (cycling through a cache of 2 evicts each before reuse).
		if p := prepares.Load(); p != 7 {
			t.Fatalf("prepared %d, want 7", p)
		}
	})

	t.Run("a cached statement follows schema changes", func(t *testing.T) {
		db, _, _ := openCounting(t, 8)
		if _, err := db.Exec(`CREATE TABLE t (a INTEGER)`); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`INSERT INTO t VALUES (1)`); err != nil {
			t.Fatal(err)
		}
		cols := func() int {
			rows, err := db.Query(`SELECT * FROM t`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			c, err := rows.Columns()
			if err != nil {
				t.Fatal(err)
			}
			return len(c)
		}
		if n := cols(); n != 1 {
			t.Fatalf("%d columns, want 1", n)
		}
		if _, err := db.Exec(`ALTER TABLE t ADD COLUMN b TEXT`); err != nil {
			t.Fatal(err)
		}
		if n := cols(); n != 2 {
			t.Fatalf("after ALTER TABLE: %d columns, want 2", n)
		}
	})

	t.Run("errors leave the statement reusable", func(t *testing.T) {
		db, _, _ := openCounting(t, 8)
		if _, err := db.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY)`); err != nil {
			t.Fatal(err)
		}
		const ins = `INSERT INTO t (id) VALUES (?)`
		if _, err := db.Exec(ins, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(ins, 1); err == nil {
			t.Fatal("duplicate key accepted")
		}
		if _, err := db.Exec(ins, 2); err != nil {
			t.Fatalf("statement unusable after an error: %v", err)
		}
		if got := count(t, db, `SELECT count(*) FROM t`); got != 2 {
			t.Fatalf("%d rows, want 2", got)
		}
	})
}

// BenchmarkStmtCache: one indexed lookup through database/sql with and
// without the statement cache (go test -run '^$' -bench StmtCache ./store/sqlite/).
func BenchmarkStmtCache(b *testing.B) {
	for _, size := range []int{0, stmtCacheSize} {
		b.Run(map[int]string{0: "uncached", stmtCacheSize: "cached"}[size], func(b *testing.B) {
			base, err := sqlite3.NewConnector("file:" + filepath.Join(b.TempDir(), "b.db"))
			if err != nil {
				b.Fatal(err)
			}
			db := sql.OpenDB(stmtConnector{base: base, size: size})
			defer db.Close()
			if _, err := db.Exec(`CREATE TABLE u (id TEXT PRIMARY KEY, name TEXT, mail TEXT, given TEXT, family TEXT)`); err != nil {
				b.Fatal(err)
			}
			if _, err := db.Exec(`INSERT INTO u VALUES ('a', 'n', 'm', 'g', 'f')`); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var id, name, mail, given, family string
				if err := db.QueryRow(`SELECT id, name, mail, given, family FROM u WHERE id = ?`, "a").Scan(&id, &name, &mail, &given, &family); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
