package sqlstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"

	"go.uber.org/zap"
)

// Migration is one numbered SQL file.
type Migration struct {
	Version  int
	Name     string // file name
	SQL      string
	Checksum string // hex SHA-256 of the file
}

var migrationName = regexp.MustCompile(`^(\d{4})_[a-z0-9_]+\.sql$`)

// LoadMigrations reads NNNN_name.sql files from fsys (top level), sorted by
// version. Gaps are allowed (number ranges are reserved per feature);
// duplicate versions and other file names are errors.
func LoadMigrations(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	var out []Migration
	seen := map[int]string{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("store: migrations: unexpected file %q (want NNNN_name.sql)", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("store: migrations: %q and %q share version %d", prev, e.Name(), v)
		}
		seen[v] = e.Name()
		b, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("store: migrations: %w", err)
		}
		sum := sha256.Sum256(b)
		out = append(out, Migration{Version: v, Name: e.Name(), SQL: string(b), Checksum: hex.EncodeToString(sum[:])})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// Migrate applies the embedded migrations that are not applied yet, in
// version order, in one transaction under a lock (PostgreSQL: an advisory
// lock; SQLite: the single writer's immediate transaction). It refuses to
// run when an applied migration's file changed or disappeared.
func (s *Store) Migrate(ctx context.Context) error {
	ms, err := LoadMigrations(s.migrations)
	if err != nil {
		return err
	}
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("store: migrate: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	c := dconn{c: tx, d: s.d}
	if s.d.MigrationLock != "" {
		if _, err := c.Exec(ctx, s.d.MigrationLock); err != nil {
			return fmt.Errorf("store: migrate: lock: %w", err)
		}
	}
	if _, err := c.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version INTEGER PRIMARY KEY,
	name TEXT NOT NULL,
	checksum TEXT NOT NULL,
	applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("store: migrate: create schema_migrations: %w", err)
	}
	applied, err := readApplied(ctx, c)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	if err := checkApplied(ms, applied); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	for _, m := range ms {
		if _, ok := applied[m.Version]; ok {
			continue
		}
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return fmt.Errorf("store: migrate: apply %s: %w", m.Name, err)
		}
		if _, err := c.Exec(ctx, `INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)`,
			m.Version, m.Name, m.Checksum, s.nowUTC().UnixMicro()); err != nil {
			return fmt.Errorf("store: migrate: record %s: %w", m.Name, err)
		}
		s.log.Info("applied migration", zap.String("migration", m.Name))
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("store: migrate: commit: %w", err)
	}
	return nil
}

// PendingMigrations returns the names of the embedded migrations not
// applied yet, in version order (all of them when the database has no
// schema_migrations table). It only reads: it creates no table and takes
// no lock, so a dry run can refuse an unmigrated database without
// migrating it. Like Migrate it fails when an applied migration's file
// changed or disappeared.
func (s *Store) PendingMigrations(ctx context.Context) ([]string, error) {
	ms, err := LoadMigrations(s.migrations)
	if err != nil {
		return nil, err
	}
	var exists string
	switch s.d.Name {
	case "sqlite":
		exists = `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'`
	case "postgres":
		// to_regclass resolves the name on the search_path, as Migrate's
		// CREATE TABLE does; NULL when there is no such table.
		exists = `SELECT count(*) FROM (SELECT to_regclass('schema_migrations') AS t) r WHERE r.t IS NOT NULL`
	default:
		return nil, fmt.Errorf("store: pending migrations: unknown dialect %q", s.d.Name)
	}
	c := dconn{c: s.db, d: s.d}
	var n int
	if err := c.QueryRow(ctx, exists).Scan(&n); err != nil {
		return nil, fmt.Errorf("store: pending migrations: look for schema_migrations: %w", err)
	}
	applied := map[int][2]string{}
	if n > 0 {
		if applied, err = readApplied(ctx, c); err != nil {
			return nil, fmt.Errorf("store: pending migrations: %w", err)
		}
	}
	if err := checkApplied(ms, applied); err != nil {
		return nil, fmt.Errorf("store: pending migrations: %w", err)
	}
	var out []string
	for _, m := range ms {
		if _, ok := applied[m.Version]; !ok {
			out = append(out, m.Name)
		}
	}
	return out, nil
}

// readApplied reads schema_migrations: version → {name, checksum}.
func readApplied(ctx context.Context, c Conn) (map[int][2]string, error) {
	applied := map[int][2]string{}
	rows, err := c.Query(ctx, `SELECT version, name, checksum FROM schema_migrations`)
	if err != nil {
		return nil, fmt.Errorf("read applied: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var v int
		var name, sum string
		if err := rows.Scan(&v, &name, &sum); err != nil {
			return nil, fmt.Errorf("read applied: %w", err)
		}
		applied[v] = [2]string{name, sum}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read applied: %w", err)
	}
	return applied, nil
}

// checkApplied refuses applied migrations (from readApplied) that ms does
// not account for: an applied file that was edited since, or one this
// binary does not have. Migrate and PendingMigrations share it.
func checkApplied(ms []Migration, applied map[int][2]string) error {
	known := map[int]bool{}
	for _, m := range ms {
		known[m.Version] = true
		if a, ok := applied[m.Version]; ok && a[1] != m.Checksum {
			return fmt.Errorf("applied migration %s was edited (checksum %.12s, file now %.12s); an applied migration must never change — add a new one", a[0], a[1], m.Checksum)
		}
	}
	for v, a := range applied {
		if !known[v] {
			return fmt.Errorf("database has migration %s that this binary does not know (database newer than binary?)", a[0])
		}
	}
	return nil
}
