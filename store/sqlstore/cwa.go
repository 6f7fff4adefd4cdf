package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
)

// Bulk forms of PutFirm, PutOffice and PutLegacyLogin for the CWA sync,
// which writes tens of thousands of rows per run (cwasync uses them when
// the transaction has them, else the single puts). They are not part of
// store.Tx. Semantics equal the single puts: unchanged rows are skipped,
// versions bumped, one audit event (same action) per changed row; per chunk
// of keys they cost one locked read and one multi-row upsert instead of two
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
		`INSERT INTO firms (number, name, type, parent_number, enabled, version, updated_at) VALUES `, 7,
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
		`INSERT INTO offices (code, firm_number, address, city, postcode, active, version, updated_at) VALUES `, 8,
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
		`INSERT INTO legacy_logins (login, firm_number, email, email_lc, given_name, family_name, office_codes, user_id, version, updated_at) VALUES `, 10,
		`ON CONFLICT (login) DO UPDATE SET firm_number = excluded.firm_number, email = excluded.email, email_lc = excluded.email_lc,
given_name = excluded.given_name, family_name = excluded.family_name, office_codes = excluded.office_codes,
user_id = excluded.user_id, version = excluded.version, updated_at = excluded.updated_at`,
		func(l *directory.LegacyLogin) []any {
			return []any{l.Login, l.FirmNumber, l.Email, strings.ToLower(l.Email), l.GivenName, l.FamilyName, marshalList(l.OfficeCodes),
				l.UserID, l.Version, t.s.d.Time(l.UpdatedAt)}
		},
		"legacy_login.put", "legacy_login")
}

func byKey[V any](vs []V, key func(V) string) map[string]V {
	m := make(map[string]V, len(vs))
	for _, v := range vs {
		m[key(v)] = v
	}
	return m
}

// bulkPut writes items in chunks: read the current rows of the chunk's
// keys, let changed decide (and set Version/UpdatedAt), upsert the changed
// ones in one statement, and record one event per changed row.
func bulkPut[V any](ctx context.Context, t *txn, op string, items []*V,
	key func(*V) string,
	load func(ctx context.Context, keys []string) (map[string]V, error),
	changed func(item *V, cur V, exists bool) bool,
	insert string, cols int, onConflict string, args func(*V) []any,
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
	per := t.s.d.MaxRowsPerInsert
	if max := 30000 / cols; per > max { // stay below the drivers' bind-parameter limits
		per = max
	}
	n := 0
	for start := 0; start < len(items); start += per {
		chunk := items[start:min(start+per, len(items))]
		keys := make([]string, len(chunk))
		for i, it := range chunk {
			keys[i] = key(it)
		}
		cur, err := load(ctx, keys)
		if err != nil {
			return n, fmt.Errorf("store: %s: %w", op, err)
		}
		var b strings.Builder
		b.WriteString(insert)
		var vals []any
		var befores []json.RawMessage
		var writes []*V
		for _, it := range chunk {
			c, exists := cur[key(it)]
			if !changed(it, c, exists) {
				continue
			}
			if len(writes) > 0 {
				b.WriteByte(',')
			}
			b.WriteString(placeholders(cols))
			vals = append(vals, args(it)...)
			var before json.RawMessage
			if exists {
				before = audit.Marshal(c)
			}
			befores, writes = append(befores, before), append(writes, it)
		}
		if len(writes) == 0 {
			continue
		}
		b.WriteString(" " + onConflict)
		if _, err := t.c.Exec(ctx, b.String(), vals...); err != nil {
			return n, fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
		}
		for i, it := range writes {
			if err := t.record(ctx, action, objectType, key(it), befores[i], audit.Marshal(it)); err != nil {
				return n, err
			}
		}
		n += len(writes)
	}
	return n, nil
}
