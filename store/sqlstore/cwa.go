package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
)

// Bulk forms of PutFirm, PutOffice and PutLegacyLogin for the CWA sync,
// which writes tens of thousands of rows per run (cwasync uses them when
// the transaction has them, else the single puts). They are not part of
// store.Tx. Semantics equal the single puts: unchanged rows are skipped,
// versions bumped, one audit event (same action) per changed row; per chunk
// of keys they cost one locked read, one bulk insert of the new rows (COPY
// on PostgreSQL) and multi-row upserts of the changed ones, instead of two
// statements per row. A key given twice is an error.

// PutFirms creates or updates firms by number; it returns how many changed.
func (t *txn) PutFirms(ctx context.Context, fs []*directory.Firm) (int, error) {
	return bulkPut(ctx, t, "put firms", fs,
		func(f *directory.Firm) string { return f.Number },
		func(ctx context.Context, keys []string) (map[string]directory.Firm, error) {
			in, arg := t.s.d.InList("number", keys)
			cur, err := t.queryFirms(ctx, "WHERE "+in+t.forUpdate(), arg)
			return byKey(cur, func(f directory.Firm) string { return f.Number }), err
		},
		func(f *directory.Firm, c directory.Firm, exists bool) bool {
			if exists && c.Name == f.Name && c.Type == f.Type && c.ParentNumber == f.ParentNumber && c.Enabled == f.Enabled {
				f.Version, f.UpdatedAt = c.Version, c.UpdatedAt
				return false
			}
			f.Version, f.UpdatedAt = c.Version+1, t.s.nowUTC()
			return true
		},
		"firms", []string{"number", "name", "type", "parent_number", "enabled", "version", "updated_at"},
		`ON CONFLICT (number) DO UPDATE SET name = excluded.name, type = excluded.type, parent_number = excluded.parent_number,
enabled = excluded.enabled, version = excluded.version, updated_at = excluded.updated_at`,
		func(f *directory.Firm) []any {
			return []any{f.Number, f.Name, string(f.Type), f.ParentNumber, f.Enabled, f.Version, t.s.d.Time(f.UpdatedAt)}
		},
		"firm.put", "firm")
}

// PutOffices creates or updates offices by code; it returns how many changed.
func (t *txn) PutOffices(ctx context.Context, os []*directory.Office) (int, error) {
	for _, o := range os {
		if o.Code == "" || o.FirmNumber == "" {
			return 0, fmt.Errorf("store: put offices: %q: code and firm number are required", o.Code)
		}
		if len(o.Address) == 0 {
			o.Address = nil
		}
	}
	return bulkPut(ctx, t, "put offices", os,
		func(o *directory.Office) string { return o.Code },
		func(ctx context.Context, keys []string) (map[string]directory.Office, error) {
			in, arg := t.s.d.InList("code", keys)
			cur, err := t.queryOffices(ctx, "WHERE "+in+t.forUpdate(), arg)
			return byKey(cur, func(o directory.Office) string { return o.Code }), err
		},
		func(o *directory.Office, c directory.Office, exists bool) bool {
			if exists && c.FirmNumber == o.FirmNumber && slices.Equal(c.Address, o.Address) && c.City == o.City && c.Postcode == o.Postcode && c.Active == o.Active {
				o.Version, o.UpdatedAt = c.Version, c.UpdatedAt
				return false
			}
			o.Version, o.UpdatedAt = c.Version+1, t.s.nowUTC()
			return true
		},
		"offices", []string{"code", "firm_number", "address", "city", "postcode", "active", "version", "updated_at"},
		`ON CONFLICT (code) DO UPDATE SET firm_number = excluded.firm_number, address = excluded.address, city = excluded.city,
postcode = excluded.postcode, active = excluded.active, version = excluded.version, updated_at = excluded.updated_at`,
		func(o *directory.Office) []any {
			return []any{o.Code, o.FirmNumber, marshalList(o.Address), o.City, o.Postcode, o.Active, o.Version, t.s.d.Time(o.UpdatedAt)}
		},
		"office.put", "office")
}

// PutLegacyLogins creates or updates legacy logins by login; it returns how
// many changed.
func (t *txn) PutLegacyLogins(ctx context.Context, ls []*directory.LegacyLogin) (int, error) {
	for _, l := range ls {
		if l.Login == "" || l.FirmNumber == "" {
			return 0, fmt.Errorf("store: put legacy logins: %q: login and firm number are required", l.Login)
		}
		l.OfficeCodes = dedupe(l.OfficeCodes)
		if len(l.OfficeCodes) == 0 {
			l.OfficeCodes = nil
		}
	}
	return bulkPut(ctx, t, "put legacy logins", ls,
		func(l *directory.LegacyLogin) string { return l.Login },
		func(ctx context.Context, keys []string) (map[string]directory.LegacyLogin, error) {
			in, arg := t.s.d.InList("login", keys)
			cur, err := t.queryLegacy(ctx, "WHERE "+in+t.forUpdate(), arg)
			return byKey(cur, func(l directory.LegacyLogin) string { return l.Login }), err
		},
		func(l *directory.LegacyLogin, c directory.LegacyLogin, exists bool) bool {
			if exists && c.FirmNumber == l.FirmNumber && c.Email == l.Email && c.GivenName == l.GivenName && c.FamilyName == l.FamilyName &&
				slices.Equal(c.OfficeCodes, l.OfficeCodes) && c.UserID == l.UserID {
				l.Version, l.UpdatedAt = c.Version, c.UpdatedAt
				return false
			}
			l.Version, l.UpdatedAt = c.Version+1, t.s.nowUTC()
			return true
		},
		"legacy_logins", []string{"login", "firm_number", "email", "email_lc", "given_name", "family_name", "office_codes", "user_id", "version", "updated_at"},
		`ON CONFLICT (login) DO UPDATE SET firm_number = excluded.firm_number, email = excluded.email, email_lc = excluded.email_lc,
given_name = excluded.given_name, family_name = excluded.family_name, office_codes = excluded.office_codes,
user_id = excluded.user_id, version = excluded.version, updated_at = excluded.updated_at`,
		func(l *directory.LegacyLogin) []any {
			return []any{l.Login, l.FirmNumber, l.Email, strings.ToLower(l.Email), l.GivenName, l.FamilyName, marshalList(l.OfficeCodes),
				l.UserID, l.Version, t.s.d.Time(l.UpdatedAt)}
		},
		"legacy_login.put", "legacy_login")
}

// PutLinks is the bulk form of PutLink (same semantics per link: created
// or updated, last seen refreshed, gone cleared; one "link.put" event per
// link that is new or changed): one locked read per source and chunk of
// keys, new links written with bulkInsert (COPY on PostgreSQL), existing
// ones updated one by one (re-links are rare). A key given twice is an
// error.
func (t *txn) PutLinks(ctx context.Context, ls []directory.SourceLink) (int, error) {
	const op = "put links"
	now := t.s.nowUTC()
	bySource := map[string][]*directory.SourceLink{}
	var sources []string
	seen := make(map[[2]string]bool, len(ls))
	for i := range ls {
		l := &ls[i]
		if l.Source == "" || l.Key == "" || l.UserID == "" {
			return 0, fmt.Errorf("store: %s: %s/%q: source, key and user id are required", op, l.Source, l.Key)
		}
		k := [2]string{l.Source, l.Key}
		if seen[k] {
			return 0, fmt.Errorf("store: %s: %s/%q given twice", op, l.Source, l.Key)
		}
		seen[k] = true
		if l.LastSeenAt.IsZero() {
			l.LastSeenAt = now
		}
		l.LastSeenAt = l.LastSeenAt.UTC().Truncate(time.Microsecond)
		l.GoneAt = nil
		if _, ok := bySource[l.Source]; !ok {
			sources = append(sources, l.Source)
		}
		bySource[l.Source] = append(bySource[l.Source], l)
	}
	d := t.s.d
	n := 0
	for _, src := range sources {
		all := bySource[src]
		for start := 0; start < len(all); start += loadChunk {
			chunk := all[start:min(start+loadChunk, len(all))]
			keys := make([]string, len(chunk))
			for i, l := range chunk {
				keys[i] = l.Key
			}
			in, arg := d.InList("link_key", keys)
			cur, err := t.queryLinks(ctx, "WHERE source = ? AND "+in+t.forUpdate(), src, arg)
			if err != nil {
				return n, fmt.Errorf("store: %s: %w", op, err)
			}
			have := byKey(cur, func(l directory.SourceLink) string { return l.Key })
			var fresh [][]any
			for _, l := range chunk {
				c, exists := have[l.Key]
				if !exists {
					fresh = append(fresh, []any{l.Source, l.Key, l.UserID, l.DN, nil, d.Time(l.LastSeenAt)})
					if err := t.record(ctx, "link.put", "user", l.UserID, nil, audit.Marshal(l)); err != nil {
						return n, err
					}
					n++
					continue
				}
				if _, err := t.c.Exec(ctx, `UPDATE source_links SET user_id = ?, dn = ?, gone_at = NULL, last_seen_at = ? WHERE source = ? AND link_key = ?`,
					l.UserID, l.DN, d.Time(l.LastSeenAt), l.Source, l.Key); err != nil {
					return n, fmt.Errorf("store: %s: %s/%q: %w", op, l.Source, l.Key, t.s.mapErr(err))
				}
				if c.UserID == l.UserID && c.DN == l.DN && c.GoneAt == nil {
					continue
				}
				if err := t.record(ctx, "link.put", "user", l.UserID, audit.Marshal(c), audit.Marshal(l)); err != nil {
					return n, err
				}
				n++
			}
			if err := t.bulkInsert(ctx, "source_links", []string{"source", "link_key", "user_id", "dn", "gone_at", "last_seen_at"}, fresh, ""); err != nil {
				return n, fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
			}
		}
	}
	return n, nil
}

func byKey[V any](vs []V, key func(V) string) map[string]V {
	m := make(map[string]V, len(vs))
	for _, v := range vs {
		m[key(v)] = v
	}
	return m
}

// loadChunk bounds the keys of one locked read of a bulk put (one array
// argument on PostgreSQL, one JSON argument on SQLite).
const loadChunk = 10000

// bulkPut writes items in chunks: read the current rows of the chunk's
// keys (locked), let changed decide (and set Version/UpdatedAt), write the
// new rows with bulkInsert (COPY on PostgreSQL) and upsert the changed
// existing ones in multi-row statements, and record one event per changed
// row. A new row that another transaction inserts meanwhile makes the COPY
// fail with a conflict: the whole transaction rolls back, nothing is half
// written.
func bulkPut[V any](ctx context.Context, t *txn, op string, items []*V,
	key func(*V) string,
	load func(ctx context.Context, keys []string) (map[string]V, error),
	changed func(item *V, cur V, exists bool) bool,
	table string, cols []string, onConflict string, args func(*V) []any,
	action, objectType string,
) (int, error) {
	seen := make(map[string]bool, len(items))
	for _, it := range items {
		k := key(it)
		if k == "" {
			return 0, fmt.Errorf("store: %s: empty key", op)
		}
		if seen[k] {
			return 0, fmt.Errorf("store: %s: %q given twice", op, k)
		}
		seen[k] = true
	}
	n := 0
	for start := 0; start < len(items); start += loadChunk {
		chunk := items[start:min(start+loadChunk, len(items))]
		keys := make([]string, len(chunk))
		for i, it := range chunk {
			keys[i] = key(it)
		}
		cur, err := load(ctx, keys)
		if err != nil {
			return n, fmt.Errorf("store: %s: %w", op, err)
		}
		var fresh [][]any
		var updates, written []*V
		var befores []json.RawMessage
		for _, it := range chunk {
			c, exists := cur[key(it)]
			if !changed(it, c, exists) {
				continue
			}
			var before json.RawMessage
			if exists {
				before = audit.Marshal(c)
				updates = append(updates, it)
			} else {
				fresh = append(fresh, args(it))
			}
			written, befores = append(written, it), append(befores, before)
		}
		if err := t.bulkInsert(ctx, table, cols, fresh, ""); err != nil {
			return n, fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
		}
		if err := upsertRows(ctx, t, table, cols, onConflict, updates, args); err != nil {
			return n, fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
		}
		// One event per written row, marshalled while the events stream
		// (writeEvents); the items do not change before this returns.
		if err := t.writeEvents(ctx, len(written), func(i int) audit.Event {
			return audit.Event{Action: action, ObjectType: objectType, ObjectID: key(written[i]),
				Before: befores[i], After: audit.Marshal(written[i])}
		}); err != nil {
			return n, err
		}
		n += len(written)
	}
	return n, nil
}

// upsertRows writes existing rows with multi-row INSERT ... ON CONFLICT
// statements, staying below the drivers' bind-parameter limits.
func upsertRows[V any](ctx context.Context, t *txn, table string, cols []string, onConflict string, items []*V, args func(*V) []any) error {
	per := t.s.d.MaxRowsPerInsert
	if max := 30000 / len(cols); per > max {
		per = max
	}
	head := "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES "
	ph := placeholders(len(cols))
	for start := 0; start < len(items); start += per {
		chunk := items[start:min(start+per, len(items))]
		var b strings.Builder
		b.WriteString(head)
		vals := make([]any, 0, len(chunk)*len(cols))
		for i, it := range chunk {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(ph)
			vals = append(vals, args(it)...)
		}
		b.WriteString(" " + onConflict)
		if _, err := t.c.Exec(ctx, b.String(), vals...); err != nil {
			return err
		}
	}
	return nil
}
