package sqlstore

import (
	"context"
	"fmt"
	"testing"

	"github.com/dirsyncd/dirsyncd/directory"
)

func TestProvCacheBounded(t *testing.T) {
	c := &provCache{m: map[string][]directory.Provenance{}}
	want := []directory.Provenance{{Kind: directory.ProvRule, Ref: "r1"}}
	c.put("a", want)
	if p, ok := c.get([]byte("a")); !ok || len(p) != 1 || p[0] != want[0] {
		t.Fatalf("get(a) = %v, %v", p, ok)
	}
	if _, ok := c.get([]byte("b")); ok {
		t.Fatal("get(b) found a text never put")
	}
	for i := range provCacheMax + 10 {
		c.put(fmt.Sprint(i), want)
	}
	if n := len(c.m); n > provCacheMax {
		t.Fatalf("%d entries, more than %d", n, provCacheMax)
	}
}

// recConn records what bulkInsert sends: statements (Exec) and COPYs.
type recConn struct {
	TxConn
	execs, copies []string
	rows          int
}

func (c *recConn) Exec(_ context.Context, q string, args ...any) (int64, error) {
	c.execs = append(c.execs, q)
	return 1, nil
}

func (c *recConn) CopyFrom(_ context.Context, table string, _ []string, n int, row func(int) []any) (int64, error) {
	c.copies = append(c.copies, table)
	for i := range n {
		_ = row(i)
		c.rows++
	}
	return int64(n), nil
}

// TestBulkInsertCopiesOnlyManyRows: a handful of rows goes as one INSERT
// (one round trip), COPY is for copyMinRows and more (both entry points).
func TestBulkInsertCopiesOnlyManyRows(t *testing.T) {
	for _, tc := range []struct {
		n              int
		wantCopy       bool
		wantExecs      int
		wantCopiedRows int
	}{
		{n: 1, wantExecs: 1},
		{n: copyMinRows - 1, wantExecs: 1},
		{n: copyMinRows, wantCopy: true, wantCopiedRows: copyMinRows},
		{n: 5000, wantCopy: true, wantCopiedRows: 5000},
	} {
		for _, entry := range []string{"bulkInsert", "bulkInsertFunc"} {
			t.Run(fmt.Sprintf("%s/%d", entry, tc.n), func(t *testing.T) {
				rc := &recConn{}
				d := &Dialect{Name: "postgres", Numbered: true, MaxRowsPerInsert: 1000}
				tx := &txn{reader: reader{s: &Store{d: d}, c: dconn{c: rc, d: d}, inTx: true}, raw: rc}
				rows := make([][]any, tc.n)
				for i := range rows {
					rows[i] = []any{i, "x"}
				}
				var err error
				if entry == "bulkInsert" {
					err = tx.bulkInsert(context.Background(), "t", []string{"a", "b"}, rows, "")
				} else {
					err = tx.bulkInsertFunc(context.Background(), "t", []string{"a", "b"}, tc.n, func(i int) []any { return rows[i] })
				}
				if err != nil {
					t.Fatal(err)
				}
				if got := len(rc.copies) > 0; got != tc.wantCopy {
					t.Fatalf("COPY used = %v, want %v (execs %d)", got, tc.wantCopy, len(rc.execs))
				}
				if len(rc.execs) != tc.wantExecs || rc.rows != tc.wantCopiedRows {
					t.Fatalf("%d INSERTs and %d rows copied, want %d and %d", len(rc.execs), rc.rows, tc.wantExecs, tc.wantCopiedRows)
				}
			})
		}
	}
}
