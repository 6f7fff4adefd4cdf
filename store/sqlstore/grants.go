package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/google/uuid"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

const grantSelect = `SELECT id, user_id, firm_number, service, role, all_offices, offices, provenance, version, created_at, updated_at FROM grants`

func (r *reader) queryGrants(ctx context.Context, tail string, args ...any) ([]directory.Grant, error) {
	rows, err := r.c.Query(ctx, grantSelect+" "+tail, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []directory.Grant
	for rows.Next() {
		var g directory.Grant
		var offices, prov []byte
		if err := rows.Scan(&g.ID, &g.UserID, &g.FirmNumber, &g.Service, &g.Role, &g.AllOffices, jscan{&offices}, jscan{&prov},
			&g.Version, tscan{&g.CreatedAt}, tscan{&g.UpdatedAt}); err != nil {
			return nil, err
		}
		if err := unmarshalList(offices, &g.Offices); err != nil {
			return nil, err
		}
		if len(prov) > 0 {
			if err := json.Unmarshal(prov, &g.Provenance); err != nil {
				return nil, err
			}
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

const grantKeyWhere = "WHERE user_id = ? AND firm_number = ? AND service = ? AND role = ?"

// GetGrant returns the grant with key k.
func (r *reader) GetGrant(ctx context.Context, k directory.GrantKey) (directory.Grant, error) {
	gs, err := r.queryGrants(ctx, grantKeyWhere, k.UserID, k.FirmNumber, k.Service, k.Role)
	if err != nil {
		return directory.Grant{}, fmt.Errorf("store: get grant %v: %w", k, err)
	}
	if len(gs) == 0 {
		return directory.Grant{}, fmt.Errorf("store: get grant %v: %w", k, store.ErrNotFound)
	}
	return gs[0], nil
}

// ListGrants selects grants ordered by user, firm, service, role.
func (r *reader) ListGrants(ctx context.Context, q store.GrantQuery) ([]directory.Grant, error) {
	var conds []string
	var args []any
	for _, c := range []struct{ col, v string }{{"user_id", q.UserID}, {"firm_number", q.FirmNumber}, {"service", q.Service}, {"role", q.Role}} {
		if c.v != "" {
			conds, args = append(conds, c.col+" = ?"), append(args, c.v)
		}
	}
	tail := ""
	if len(conds) > 0 {
		tail = "WHERE " + strings.Join(conds, " AND ")
	}
	gs, err := r.queryGrants(ctx, tail+" ORDER BY user_id, firm_number, service, role", args...)
	if err != nil {
		return nil, fmt.Errorf("store: list grants: %w", err)
	}
	return gs, nil
}

func normalizeGrant(g *directory.Grant) {
	if g.AllOffices {
		g.Offices = nil
	} else {
		g.Offices = dedupe(g.Offices)
		if len(g.Offices) == 0 {
			g.Offices = nil
		}
	}
	seen := map[directory.Provenance]bool{}
	var prov []directory.Provenance
	for _, p := range g.Provenance {
		if !seen[p] {
			seen[p] = true
			prov = append(prov, p)
		}
	}
	sort.Slice(prov, func(i, j int) bool {
		a, b := prov[i], prov[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Ref != b.Ref {
			return a.Ref < b.Ref
		}
		return a.Detail < b.Detail
	})
	g.Provenance = prov
}

// PutGrant creates or updates the grant with g's key. Offices are sorted
// and de-duplicated, provenance de-duplicated and sorted.
func (t *txn) PutGrant(ctx context.Context, g *directory.Grant) error {
	k := g.Key()
	op := fmt.Sprintf("put grant %v", k)
	if k.UserID == "" || k.FirmNumber == "" || k.Service == "" || k.Role == "" {
		return fmt.Errorf("store: %s: user, firm, service and role are required", op)
	}
	normalizeGrant(g)
	cur, err := t.queryGrants(ctx, grantKeyWhere+t.forUpdate(), k.UserID, k.FirmNumber, k.Service, k.Role)
	if err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	now := t.s.nowUTC()
	prov, _ := json.Marshal(g.Provenance)
	if g.Provenance == nil {
		prov = []byte("[]")
	}
	if len(cur) == 0 {
		if g.ID == "" {
			g.ID = uuid.NewString()
		}
		g.Version, g.CreatedAt, g.UpdatedAt = 1, now, now
		if _, err := t.c.Exec(ctx, `INSERT INTO grants (id, user_id, firm_number, service, role, all_offices, offices, provenance, version, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, g.ID, g.UserID, g.FirmNumber, g.Service, g.Role, g.AllOffices, marshalList(g.Offices),
			string(prov), g.Version, t.s.d.Time(now), t.s.d.Time(now)); err != nil {
			return fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
		}
		return t.record(ctx, "grant.put", "grant", g.UserID, nil, audit.Marshal(g))
	}
	c := cur[0]
	g.ID, g.CreatedAt = c.ID, c.CreatedAt
	if c.AllOffices == g.AllOffices && reflect.DeepEqual(c.Offices, g.Offices) && reflect.DeepEqual(c.Provenance, g.Provenance) {
		g.Version, g.UpdatedAt = c.Version, c.UpdatedAt
		return nil
	}
	g.Version, g.UpdatedAt = c.Version+1, now
	if _, err := t.c.Exec(ctx, `UPDATE grants SET all_offices = ?, offices = ?, provenance = ?, version = ?, updated_at = ? WHERE id = ?`,
		g.AllOffices, marshalList(g.Offices), string(prov), g.Version, t.s.d.Time(now), g.ID); err != nil {
		return fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
	}
	return t.record(ctx, "grant.put", "grant", g.UserID, audit.Marshal(c), audit.Marshal(g))
}

// DeleteGrant removes a grant; ErrNotFound when there is none.
func (t *txn) DeleteGrant(ctx context.Context, k directory.GrantKey) error {
	op := fmt.Sprintf("delete grant %v", k)
	cur, err := t.queryGrants(ctx, grantKeyWhere+t.forUpdate(), k.UserID, k.FirmNumber, k.Service, k.Role)
	if err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	if len(cur) == 0 {
		return fmt.Errorf("store: %s: %w", op, store.ErrNotFound)
	}
	if _, err := t.c.Exec(ctx, `DELETE FROM grants WHERE id = ?`, cur[0].ID); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	return t.record(ctx, "grant.delete", "grant", k.UserID, audit.Marshal(cur[0]), nil)
}
