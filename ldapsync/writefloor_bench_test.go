package ldapsync

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // database/sql driver "sqlite", as store/sqlite uses

	"github.com/dirsyncd/dirsyncd/internal/testenv"
	"github.com/dirsyncd/dirsyncd/store/postgres"
	"github.com/dirsyncd/dirsyncd/store/sqlite"
)

// The store's write floor: after the first full sync, the same rows are
// copied into a fresh store with the same schema (migrations, indexes,
// foreign keys, triggers) by the engine's own bulk path — SQLite's
// INSERT … SELECT from an attached database in one transaction, PostgreSQL's
// binary COPY from one database into another — and timed. No client can
// write those rows into that schema faster, so the first full sync's time
// over this one says how much the sync itself adds to the writing it must
// do. Every table the sync wrote is copied (tables are listed in foreign-key
// order; a non-empty table not in the list fails the benchmark) and the
// copy's row counts are checked against the source's.
var floorTables = []string{
	"users", "user_emails", "source_links", "groups", "group_members", "group_edges",
	"firms", "offices", "firm_memberships", "legacy_logins", "grants",
	"runs", "run_items", "cursors", "sync_fingerprints", "sync_group_fingerprints", "audit_events",
}

// Not copied: the migrations' own bookkeeping and the single-row chain
// head (set from the source after the copy), and leases (empty after a run).
var floorSkip = []string{"schema_migrations", "audit_head", "leases"}

// sqliteWriteFloor copies srcPath's rows into a fresh migrated SQLite file.
func sqliteWriteFloor(b *testing.B, srcPath string) time.Duration {
	ctx := context.Background()
	dst := b.TempDir() + "/floor.db"
	st, err := sqlite.Open(ctx, dst, sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	st.Close()
	q := url.Values{}
	for _, p := range []string{"foreign_keys(1)", "synchronous(NORMAL)", "temp_store(MEMORY)", sqlite.WriterCache} {
		q.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+dst+"?"+q.Encode())
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, "ATTACH DATABASE ? AS src", "file:"+srcPath+"?mode=ro"); err != nil {
		b.Fatal(err)
	}
	rows, err := db.QueryContext(ctx, "SELECT name FROM src.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
	if err != nil {
		b.Fatal(err)
	}
	names := tableNames(b, rows)
	rows.Close()
	count := func(schema, t string) int64 {
		var n int64
		if err := db.QueryRowContext(ctx, fmt.Sprintf("SELECT count(*) FROM %s.%q", schema, t)).Scan(&n); err != nil {
			b.Fatal(err)
		}
		return n
	}
	checkListed(b, names, func(t string) int64 { return count("src", t) })

	t0 := time.Now()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, t := range floorTables {
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("INSERT INTO main.%q SELECT * FROM src.%q", t, t)); err != nil {
			b.Fatalf("write floor: %s: %v", t, err)
		}
	}
	if _, err := tx.ExecContext(ctx, "UPDATE main.audit_head SET seq = s.seq, hash = s.hash FROM src.audit_head s"); err != nil {
		b.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	d := time.Since(t0)
	for _, t := range floorTables {
		if got, want := count("main", t), count("src", t); got != want {
			b.Fatalf("write floor: %s has %d rows, source %d", t, got, want)
		}
	}
	return d
}

// postgresWriteFloor copies srcDSN's rows into a fresh migrated database by
// binary COPY (one connection out, one in, a pipe between them; one
// transaction on the receiving side).
func postgresWriteFloor(b *testing.B, srcDSN string) time.Duration {
	ctx := context.Background()
	dstDSN := testenv.Postgres(b)
	st, err := postgres.Open(ctx, dstDSN, postgres.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	st.Close()
	src, err := pgx.Connect(ctx, srcDSN)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close(ctx)
	dst, err := pgx.Connect(ctx, dstDSN)
	if err != nil {
		b.Fatal(err)
	}
	defer dst.Close(ctx)
	count := func(c *pgx.Conn, t string) int64 {
		var n int64
		if err := c.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %q", t)).Scan(&n); err != nil {
			b.Fatal(err)
		}
		return n
	}
	rows, err := src.Query(ctx, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
	if err != nil {
		b.Fatal(err)
	}
	names := tableNames(b, rows)
	rows.Close()
	checkListed(b, names, func(t string) int64 { return count(src, t) })
	// The source's head, read before the clock starts.
	var seq int64
	var hash string
	if err := src.QueryRow(ctx, "SELECT seq, hash FROM audit_head WHERE id = 1").Scan(&seq, &hash); err != nil {
		b.Fatal(err)
	}

	t0 := time.Now()
	tx, err := dst.Begin(ctx)
	if err != nil {
		b.Fatal(err)
	}
	for _, t := range floorTables {
		pr, pw := io.Pipe()
		errc := make(chan error, 1)
		go func() {
			_, err := src.PgConn().CopyTo(ctx, pw, fmt.Sprintf("COPY %q TO STDOUT (FORMAT binary)", t))
			pw.CloseWithError(err)
			errc <- err
		}()
		_, err := tx.Conn().PgConn().CopyFrom(ctx, pr, fmt.Sprintf("COPY %q FROM STDIN (FORMAT binary)", t))
		pr.Close()
		if e := <-errc; e != nil && err == nil {
			err = e
		}
		if err != nil {
			b.Fatalf("write floor: %s: %v", t, err)
		}
	}
	if _, err := tx.Exec(ctx, "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1", seq, hash); err != nil {
		b.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		b.Fatal(err)
	}
	d := time.Since(t0)
	for _, t := range floorTables {
		if got, want := count(dst, t), count(src, t); got != want {
			b.Fatalf("write floor: %s has %d rows, source %d", t, got, want)
		}
	}
	return d
}

// tableNames reads one name per row (database/sql's and pgx's rows alike).
func tableNames(b *testing.B, rows interface {
	Next() bool
	Scan(...any) error
	Err() error
}) []string {
	b.Helper()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			b.Fatal(err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	return names
}

// checkListed fails if a non-empty table is neither copied nor skipped, so
// a table added by a later migration cannot silently leave the floor short.
func checkListed(b *testing.B, names []string, count func(string) int64) {
	b.Helper()
	var rows int64
	for _, t := range names {
		if slices.Contains(floorTables, t) {
			rows += count(t)
			continue
		}
		if !slices.Contains(floorSkip, t) && count(t) > 0 {
			b.Fatalf("write floor: table %s has rows but is not in floorTables", t)
		}
	}
	b.Logf("write floor: %d rows in %d tables", rows, len(floorTables))
}
