package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// Bulk reads for full passes (reconcile): users in id order, then every
// user-keyed fact of a page's id range in one query each. Every id column is
// compared with the same collation as the users' primary key (byte order:
// SQLite's default, COLLATE "C" on PostgreSQL), so a range read returns
// exactly the rows of the users of the page.

// ListUsersAfter pages users, soft-deleted ones included, in id order,
// with their e-mails in the same statement.
func (r *reader) ListUsersAfter(ctx context.Context, afterID string, limit int) ([]directory.User, error) {
	us, err := r.queryUsersJoined(ctx, "WHERE u.id > ? ORDER BY u.id LIMIT ?", " ORDER BY u.id", afterID, sqlLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("store: list users after %q: %w", afterID, err)
	}
	return us, nil
}

// bulkCap is the initial capacity of a range read's result (a page of
// users has at least as many rows of most kinds).
const bulkCap = 1024

// jbuf scans a JSON (or NULL) column into a buffer reused from row to row:
// for values only decoded (or used as a cache key) before the next row.
type jbuf struct{ p *[]byte }

func (s jbuf) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*s.p = (*s.p)[:0]
	case []byte:
		*s.p = append((*s.p)[:0], v...)
	case string:
		*s.p = append((*s.p)[:0], v...)
	default:
		return fmt.Errorf("sqlstore: cannot scan %T as JSON", src)
	}
	return nil
}

// decodedProvenance keeps decoded provenance texts across range reads (a
// full run reads the same few thousand texts on every page): decoding is a
// pure function of the text, so the cache is shared by every store; its
// values are never modified (each grant gets a clone) and it is emptied when
// it reaches provCacheMax entries, which bounds its memory (a few MB).
var decodedProvenance = &provCache{m: map[string][]directory.Provenance{}}

const provCacheMax = 1 << 14

type provCache struct {
	mu sync.Mutex
	m  map[string][]directory.Provenance
}

func (c *provCache) get(text []byte) ([]directory.Provenance, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.m[string(text)]
	return p, ok
}

func (c *provCache) put(text string, p []directory.Provenance) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= provCacheMax {
		clear(c.m)
	}
	c.m[text] = p
}

func checkRange(op string, rg store.UserRange) error {
	if rg.From == "" || rg.To == "" || rg.From > rg.To {
		return fmt.Errorf("store: %s: bad user range [%q, %q]", op, rg.From, rg.To)
	}
	return nil
}

// ListFirmMembershipsInRange returns the firm memberships of the users whose
// id is in rg, by user id and firm number.
func (r *reader) ListFirmMembershipsInRange(ctx context.Context, rg store.UserRange) ([]directory.FirmMembership, error) {
	const op = "list firm memberships in range"
	if err := checkRange(op, rg); err != nil {
		return nil, err
	}
	rows, err := r.c.Query(ctx, `SELECT user_id, firm_number, source FROM firm_memberships WHERE user_id >= ? AND user_id <= ? ORDER BY user_id, firm_number`, rg.From, rg.To)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", op, err)
	}
	defer rows.Close()
	out := make([]directory.FirmMembership, 0, bulkCap)
	for rows.Next() {
		out = append(out, directory.FirmMembership{}) // scanned in place: no copy, no escaping local per row
		m := &out[len(out)-1]
		if err := rows.Scan(&m.UserID, &m.FirmNumber, &m.Source); err != nil {
			return nil, fmt.Errorf("store: %s: %w", op, err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: %s: %w", op, err)
	}
	return out, nil
}

// ListGroupMembershipsInRange returns the direct group memberships of the
// users whose id is in rg, by user id and group id (deleted groups have no
// members: DeleteGroup removes them).
func (r *reader) ListGroupMembershipsInRange(ctx context.Context, rg store.UserRange) ([]store.GroupMembership, error) {
	const op = "list group memberships in range"
	if err := checkRange(op, rg); err != nil {
		return nil, err
	}
	rows, err := r.c.Query(ctx, `SELECT user_id, group_id FROM group_members WHERE user_id >= ? AND user_id <= ? ORDER BY user_id, group_id`, rg.From, rg.To)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", op, err)
	}
	defer rows.Close()
	out := make([]store.GroupMembership, 0, bulkCap)
	for rows.Next() {
		out = append(out, store.GroupMembership{})
		m := &out[len(out)-1]
		if err := rows.Scan(&m.UserID, &m.GroupID); err != nil {
			return nil, fmt.Errorf("store: %s: %w", op, err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: %s: %w", op, err)
	}
	return out, nil
}

// ListLinksInRange returns the source links (gone ones included) of the
// users whose id is in rg, by user id, source and key.
func (r *reader) ListLinksInRange(ctx context.Context, rg store.UserRange) ([]directory.SourceLink, error) {
	const op = "list links in range"
	if err := checkRange(op, rg); err != nil {
		return nil, err
	}
	rows, err := r.c.Query(ctx, linkSelect+" WHERE user_id >= ? AND user_id <= ? ORDER BY user_id, source, link_key", rg.From, rg.To)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", op, err)
	}
	defer rows.Close()
	out := make([]directory.SourceLink, 0, bulkCap)
	for rows.Next() {
		out = append(out, directory.SourceLink{}) // scanned in place (as queryLinks does, without a copy per row)
		l := &out[len(out)-1]
		if err := rows.Scan(&l.UserID, &l.Source, &l.Key, &l.DN, ntscan{&l.GoneAt}, tscan{&l.LastSeenAt}); err != nil {
			return nil, fmt.Errorf("store: %s: %w", op, err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: %s: %w", op, err)
	}
	return out, nil
}

// ListLegacyLoginsInRange returns the legacy logins linked to the users
// whose id is in rg, by user id and login.
func (r *reader) ListLegacyLoginsInRange(ctx context.Context, rg store.UserRange) ([]directory.LegacyLogin, error) {
	const op = "list legacy logins in range"
	if err := checkRange(op, rg); err != nil {
		return nil, err
	}
	ls, err := r.queryLegacy(ctx, "WHERE user_id <> '' AND user_id >= ? AND user_id <= ? ORDER BY user_id, login", rg.From, rg.To)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", op, err)
	}
	return ls, nil
}

// ListGrantsInRange returns the grants of the users whose id is in rg, by
// user, firm, service and role.
func (r *reader) ListGrantsInRange(ctx context.Context, rg store.UserRange) ([]directory.Grant, error) {
	const op = "list grants in range"
	if err := checkRange(op, rg); err != nil {
		return nil, err
	}
	rows, err := r.c.Query(ctx, grantSelect+" WHERE user_id >= ? AND user_id <= ? ORDER BY user_id, firm_number, service, role", rg.From, rg.To)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", op, err)
	}
	defer rows.Close()
	// Grants repeat the same few office lists and provenances: decode each
	// distinct JSON text once and give every grant its own copy.
	provs := map[string][]directory.Provenance{}
	lists := map[string][]string{}
	var offices, prov []byte // reused from row to row (jbuf)
	out := make([]directory.Grant, 0, bulkCap)
	for rows.Next() {
		out = append(out, directory.Grant{}) // scanned in place
		g := &out[len(out)-1]
		if err := rows.Scan(&g.ID, &g.UserID, &g.FirmNumber, &g.Service, &g.Role, &g.AllOffices, jbuf{&offices}, jbuf{&prov},
			&g.Version, tscan{&g.CreatedAt}, tscan{&g.UpdatedAt}); err != nil {
			return nil, fmt.Errorf("store: %s: %w", op, err)
		}
		if len(offices) > 0 {
			l, ok := lists[string(offices)]
			if !ok {
				if err := unmarshalList(offices, &l); err != nil {
					return nil, fmt.Errorf("store: %s: offices of grant %s: %w", op, g.ID, err)
				}
				lists[string(offices)] = l
			}
			g.Offices = slices.Clone(l)
		}
		if len(prov) > 0 {
			p, ok := provs[string(prov)]
			if !ok {
				if p, ok = decodedProvenance.get(prov); !ok {
					if err := json.Unmarshal(prov, &p); err != nil {
						return nil, fmt.Errorf("store: %s: provenance of grant %s: %w", op, g.ID, err)
					}
					decodedProvenance.put(string(prov), p)
				}
				provs[string(prov)] = p
			}
			g.Provenance = slices.Clone(p)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: %s: %w", op, err)
	}
	return out, nil
}

// CountGrants counts every grant.
func (r *reader) CountGrants(ctx context.Context) (int64, error) {
	var n int64
	if err := r.c.QueryRow(ctx, `SELECT count(*) FROM grants`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count grants: %w", err)
	}
	return n, nil
}

// ListGroupEdges returns every group-in-group edge, by parent and child.
func (r *reader) ListGroupEdges(ctx context.Context) ([]store.GroupEdge, error) {
	rows, err := r.c.Query(ctx, `SELECT parent_id, child_id FROM group_edges ORDER BY parent_id, child_id`)
	if err != nil {
		return nil, fmt.Errorf("store: list group edges: %w", err)
	}
	defer rows.Close()
	var out []store.GroupEdge
	for rows.Next() {
		var e store.GroupEdge
		if err := rows.Scan(&e.ParentID, &e.ChildID); err != nil {
			return nil, fmt.Errorf("store: list group edges: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list group edges: %w", err)
	}
	return out, nil
}

// ListSourceMemberships streams the direct memberships of a source's live
// groups, by group id and user id (the members table's primary key order).
func (r *reader) ListSourceMemberships(ctx context.Context, source string, fn func(store.GroupMembership) error) error {
	const op = "list memberships of source"
	rows, err := r.c.Query(ctx, `SELECT m.group_id, m.user_id FROM groups g JOIN group_members m ON m.group_id = g.id
WHERE g.source = ? AND g.deleted_at IS NULL ORDER BY m.group_id, m.user_id`, source)
	if err != nil {
		return fmt.Errorf("store: %s %s: %w", op, source, err)
	}
	defer rows.Close()
	for rows.Next() {
		var m store.GroupMembership
		if err := rows.Scan(&m.GroupID, &m.UserID); err != nil {
			return fmt.Errorf("store: %s %s: %w", op, source, err)
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: %s %s: %w", op, source, err)
	}
	return nil
}

// ListFirmUserIDs returns the ids of the users whose primary firm is
// firmNumber or who have a membership in it, in id order.
func (r *reader) ListFirmUserIDs(ctx context.Context, firmNumber string) ([]string, error) {
	ids, err := r.strings(ctx, `SELECT id FROM users WHERE firm_number = ?
UNION SELECT user_id FROM firm_memberships WHERE firm_number = ? ORDER BY 1`, firmNumber, firmNumber)
	if err != nil {
		return nil, fmt.Errorf("store: list users of firm %q: %w", firmNumber, err)
	}
	return ids, nil
}

// LastAuditSeq returns the sequence number of the newest audit event (0 when
// there is none).
func (r *reader) LastAuditSeq(ctx context.Context) (int64, error) {
	var n int64
	if err := r.c.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM audit_events`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: last audit seq: %w", err)
	}
	return n, nil
}
