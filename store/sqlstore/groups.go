package sqlstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/google/uuid"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

const groupSelect = `SELECT g.id, g.source, g.source_key, g.external_id, g.display_name, g.dn, g.attrs, g.version,
g.created_at, g.updated_at, g.deleted_at FROM groups g`

func (r *reader) queryGroups(ctx context.Context, tail string, args ...any) ([]directory.Group, error) {
	rows, err := r.c.Query(ctx, groupSelect+" "+tail, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []directory.Group
	for rows.Next() {
		var g directory.Group
		if err := rows.Scan(&g.ID, &g.Source, &g.SourceKey, &g.ExternalID, &g.DisplayName, &g.DN, jscan{(*[]byte)(&g.Attrs)},
			&g.Version, tscan{&g.CreatedAt}, tscan{&g.UpdatedAt}, ntscan{&g.DeletedAt}); err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

func (r *reader) oneGroup(ctx context.Context, op, tail string, args ...any) (directory.Group, error) {
	gs, err := r.queryGroups(ctx, tail, args...)
	if err != nil {
		return directory.Group{}, fmt.Errorf("store: %s: %w", op, r.s.mapErr(err))
	}
	if len(gs) == 0 {
		return directory.Group{}, fmt.Errorf("store: %s: %w", op, store.ErrNotFound)
	}
	return gs[0], nil
}

// GetGroup returns a group, deleted or not.
func (r *reader) GetGroup(ctx context.Context, id string) (directory.Group, error) {
	return r.oneGroup(ctx, fmt.Sprintf("get group %q", id), "WHERE g.id = ?", id)
}

// FindGroupBySourceKey finds a non-deleted group by its source key.
func (r *reader) FindGroupBySourceKey(ctx context.Context, source, key string) (directory.Group, error) {
	return r.oneGroup(ctx, fmt.Sprintf("find group %s/%q", source, key),
		"WHERE g.source = ? AND g.source_key = ? AND g.deleted_at IS NULL ORDER BY g.id LIMIT 1", source, key)
}

// ListGroups runs a filtered, sorted, paged query in SQL.
func (r *reader) ListGroups(ctx context.Context, q store.GroupQuery) (store.Page[directory.Group], error) {
	var page store.Page[directory.Group]
	w := &where{d: r.s.d}
	var conds []string
	if !q.IncludeDeleted {
		conds = append(conds, "g.deleted_at IS NULL")
	}
	if q.Filter != nil {
		s, err := w.filter(q.Filter, groupColumns, groupPaths)
		if err != nil {
			return page, fmt.Errorf("store: list groups: %w", err)
		}
		conds = append(conds, s)
	}
	order, err := orderBy(q.SortBy, q.SortDesc, groupColumns, "g.id")
	if err != nil {
		return page, fmt.Errorf("store: list groups: %w", err)
	}
	wh := ""
	if len(conds) > 0 {
		wh = " WHERE " + strings.Join(conds, " AND ")
	}
	if err := r.c.QueryRow(ctx, "SELECT count(*) FROM groups g"+wh, w.args...).Scan(&page.Total); err != nil {
		return page, fmt.Errorf("store: list groups: count: %w", err)
	}
	if q.Limit == 0 || page.Total == 0 {
		return page, nil
	}
	args := append(append([]any(nil), w.args...), sqlLimit(q.Limit), max(q.Offset, 0))
	page.Items, err = r.queryGroups(ctx, wh+order+" LIMIT ? OFFSET ?", args...)
	if err != nil {
		return page, fmt.Errorf("store: list groups: %w", err)
	}
	return page, nil
}

func (r *reader) strings(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := r.c.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// ListGroupMembers pages member ids in id order.
func (r *reader) ListGroupMembers(ctx context.Context, groupID, after string, limit int) ([]string, error) {
	ids, err := r.strings(ctx, `SELECT user_id FROM group_members WHERE group_id = ? AND user_id > ? ORDER BY user_id LIMIT ?`,
		groupID, after, sqlLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("store: list members of group %q: %w", groupID, err)
	}
	return ids, nil
}

// CountGroupMembers counts a group's direct members.
func (r *reader) CountGroupMembers(ctx context.Context, groupID string) (int64, error) {
	var n int64
	if err := r.c.QueryRow(ctx, `SELECT count(*) FROM group_members WHERE group_id = ?`, groupID).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count members of group %q: %w", groupID, err)
	}
	return n, nil
}

// IsGroupMember reports direct membership.
func (r *reader) IsGroupMember(ctx context.Context, groupID, userID string) (bool, error) {
	var one int
	err := r.c.QueryRow(ctx, `SELECT 1 FROM group_members WHERE group_id = ? AND user_id = ?`, groupID, userID).Scan(&one)
	if errors.Is(err, ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: is member of group %q: %w", groupID, err)
	}
	return true, nil
}

// ListUserGroups returns the groups a user is a direct member of.
func (r *reader) ListUserGroups(ctx context.Context, userID string) ([]directory.Group, error) {
	gs, err := r.queryGroups(ctx, "JOIN group_members m ON m.group_id = g.id WHERE m.user_id = ? ORDER BY g.id", userID)
	if err != nil {
		return nil, fmt.Errorf("store: list groups of user %q: %w", userID, err)
	}
	return gs, nil
}

// ListGroupChildren returns child group ids.
func (r *reader) ListGroupChildren(ctx context.Context, groupID string) ([]string, error) {
	ids, err := r.strings(ctx, `SELECT child_id FROM group_edges WHERE parent_id = ? ORDER BY child_id`, groupID)
	if err != nil {
		return nil, fmt.Errorf("store: list children of group %q: %w", groupID, err)
	}
	return ids, nil
}

func normalizeGroup(g *directory.Group) error {
	if g.DisplayName == "" {
		return fmt.Errorf("empty displayName")
	}
	attrs, err := canonicalJSON(g.Attrs)
	if err != nil {
		return fmt.Errorf("attrs: %w", err)
	}
	g.Attrs = attrs
	return nil
}

func sameGroup(a, b directory.Group) bool {
	return a.Source == b.Source && a.SourceKey == b.SourceKey && a.ExternalID == b.ExternalID &&
		a.DisplayName == b.DisplayName && a.DN == b.DN && bytes.Equal(a.Attrs, b.Attrs)
}

func (t *txn) checkGroupUnique(ctx context.Context, op string, g *directory.Group) error {
	var id string
	err := t.c.QueryRow(ctx, `SELECT id FROM groups WHERE source = ? AND display_name_lc = ? AND deleted_at IS NULL AND id <> ? LIMIT 1`,
		g.Source, strings.ToLower(g.DisplayName), g.ID).Scan(&id)
	if err == nil {
		return fmt.Errorf("store: %s: displayName %q is taken in source %q: %w", op, g.DisplayName, g.Source, store.ErrConflict)
	} else if !errors.Is(err, ErrNoRows) {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	return nil
}

func (t *txn) groupArgs(g *directory.Group) []any {
	d := t.s.d
	var del any
	if g.DeletedAt != nil {
		del = d.Time(*g.DeletedAt)
	}
	return []any{g.Source, g.SourceKey, g.ExternalID, g.DisplayName, strings.ToLower(g.DisplayName), g.DN, jarg(g.Attrs),
		g.Version, d.Time(g.CreatedAt), d.Time(g.UpdatedAt), del, g.ID}
}

// CreateGroup inserts a group and records group.create.
func (t *txn) CreateGroup(ctx context.Context, g *directory.Group) error {
	op := fmt.Sprintf("create group %q", g.DisplayName)
	if err := normalizeGroup(g); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	if g.ID == "" {
		g.ID = uuid.NewString()
	}
	if err := t.checkGroupUnique(ctx, op, g); err != nil {
		return err
	}
	now := t.s.nowUTC()
	g.Version, g.CreatedAt, g.UpdatedAt, g.DeletedAt = 1, now, now, nil
	if _, err := t.c.Exec(ctx, `INSERT INTO groups (source, source_key, external_id, display_name, display_name_lc, dn, attrs,
version, created_at, updated_at, deleted_at, id) VALUES `+placeholders(12), t.groupArgs(g)...); err != nil {
		return fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
	}
	return t.record(ctx, "group.create", "group", g.ID, nil, audit.Marshal(g))
}

func (t *txn) lockGroup(ctx context.Context, op, id string) (directory.Group, error) {
	return t.oneGroup(ctx, op, "WHERE g.id = ?"+t.forUpdate(), id)
}

func (t *txn) writeGroup(ctx context.Context, g *directory.Group) error {
	_, err := t.c.Exec(ctx, `UPDATE groups SET source = ?, source_key = ?, external_id = ?, display_name = ?, display_name_lc = ?,
dn = ?, attrs = ?, version = ?, created_at = ?, updated_at = ?, deleted_at = ? WHERE id = ?`, t.groupArgs(g)...)
	return t.s.mapErr(err)
}

// UpdateGroup replaces a group (optimistic version check).
func (t *txn) UpdateGroup(ctx context.Context, g *directory.Group, expectVersion int64) error {
	op := fmt.Sprintf("update group %q", g.ID)
	if err := normalizeGroup(g); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	cur, err := t.lockGroup(ctx, op, g.ID)
	if err != nil {
		return err
	}
	if cur.DeletedAt != nil {
		return fmt.Errorf("store: %s: group is deleted: %w", op, store.ErrNotFound)
	}
	if expectVersion > 0 && expectVersion != cur.Version {
		return fmt.Errorf("store: %s: stored version %d, expected %d: %w", op, cur.Version, expectVersion, store.ErrVersionMismatch)
	}
	g.CreatedAt, g.DeletedAt = cur.CreatedAt, nil
	if sameGroup(cur, *g) {
		g.Version, g.UpdatedAt = cur.Version, cur.UpdatedAt
		return nil
	}
	if err := t.checkGroupUnique(ctx, op, g); err != nil {
		return err
	}
	g.Version, g.UpdatedAt = cur.Version+1, t.s.nowUTC()
	if err := t.writeGroup(ctx, g); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	return t.record(ctx, "group.update", "group", g.ID, audit.Marshal(cur), audit.Marshal(g))
}

type groupDeleted struct {
	directory.Group
	RemovedMembers int64 `json:"removedMembers"`
}

// DeleteGroup soft-deletes a group, removing its memberships and edges;
// the one group.delete event counts the removed members (a group may have
// 100k members; one event each would only repeat the membership list).
func (t *txn) DeleteGroup(ctx context.Context, id string) error {
	op := fmt.Sprintf("delete group %q", id)
	cur, err := t.lockGroup(ctx, op, id)
	if err != nil {
		return err
	}
	if cur.DeletedAt != nil {
		return nil
	}
	g := cur
	now := t.s.nowUTC()
	g.DeletedAt, g.Version, g.UpdatedAt = &now, cur.Version+1, now
	if err := t.writeGroup(ctx, &g); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	n, err := t.c.Exec(ctx, `DELETE FROM group_members WHERE group_id = ?`, id)
	if err != nil {
		return fmt.Errorf("store: %s: members: %w", op, err)
	}
	if _, err := t.c.Exec(ctx, `DELETE FROM group_edges WHERE parent_id = ? OR child_id = ?`, id, id); err != nil {
		return fmt.Errorf("store: %s: edges: %w", op, err)
	}
	return t.record(ctx, "group.delete", "group", id, audit.Marshal(cur), audit.Marshal(groupDeleted{Group: g, RemovedMembers: n}))
}

func dedupe(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if id != "" && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// touchGroup gives a group whose members changed a new version and
// lastModified: the members are part of the SCIM Group, so its ETag
// (W/"<version>") must change with them, or If-None-Match answers 304 with
// stale members and an old If-Match is accepted. One UPDATE of the group's
// row (already locked by the member write's caller), no read of the member
// list: a member change stays O(changed members). Callers touch only when
// a member was actually added or removed. No audit event of its own: the
// group.member.add/remove events of the same transaction record the change.
func (t *txn) touchGroup(ctx context.Context, op, id string) error {
	if _, err := t.c.Exec(ctx, `UPDATE groups SET version = version + 1, updated_at = ? WHERE id = ?`, t.s.d.Time(t.s.nowUTC()), id); err != nil {
		return fmt.Errorf("store: %s: version: %w", op, t.s.mapErr(err))
	}
	return nil
}

func (t *txn) liveGroup(ctx context.Context, op, id string) error {
	g, err := t.lockGroup(ctx, op, id)
	if err != nil {
		return err
	}
	if g.DeletedAt != nil {
		return fmt.Errorf("store: %s: group is deleted: %w", op, store.ErrNotFound)
	}
	return nil
}

// AddMembers adds the users that are not members yet: O(len(userIDs)).
func (t *txn) AddMembers(ctx context.Context, groupID string, userIDs []string) error {
	op := fmt.Sprintf("add members to group %q", groupID)
	ids := dedupe(userIDs)
	if len(ids) == 0 {
		return nil
	}
	if err := t.liveGroup(ctx, op, groupID); err != nil {
		return err
	}
	in, arg := t.s.d.InList("user_id", ids)
	have, err := t.strings(ctx, `SELECT user_id FROM group_members WHERE group_id = ? AND `+in, groupID, arg)
	if err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	add := minus(ids, have)
	if len(add) == 0 {
		return nil
	}
	// A member is live (deleting a user removes its memberships); the
	// users to add are checked and share-locked, so a concurrent DeleteUser
	// is waited for and then seen. (Members are not locked: DeleteUser
	// locks a member's user row before its groups.)
	live, err := t.liveUsers(ctx, add)
	if err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	if live != len(add) {
		return fmt.Errorf("store: %s: %d of %d users do not exist or are deleted: %w", op, len(add)-live, len(ids), store.ErrNotFound)
	}
	if err := t.addMembers(ctx, op, groupID, add); err != nil {
		return err
	}
	return t.touchGroup(ctx, op, groupID)
}

// LiveUsersSQL is the statement liveUsers runs for ids, with its one
// argument (exported for the dialects' plan tests). The live test is on
// the rows read by id, not in the WHERE clause: with "deleted_at IS NULL"
// there, PostgreSQL on a users table not yet analyzed (a first LDAP sync's
// burst of new users, until autovacuum gets to it) read the whole partial
// index users_user_name_uq and filtered it by id, 18 ms for 150 ids among
// 100,000 users against 0.75 ms by the primary key: half of a 100,000-user
// first sync's time in PostgreSQL. (SQLite: from the covering index, not
// each user's table row.)
func LiveUsersSQL(d *Dialect, ids []string) (string, any) {
	in, arg := d.InList("id", ids)
	return d.rebind(`SELECT deleted_at IS NULL FROM users` + d.UserVersionIndex + ` WHERE ` + in + ` ORDER BY id` + d.ForShare), arg
}

// liveUsers counts the live users among ids (no duplicates), share-locking
// the rows read (Dialect.ForShare) until commit.
func (t *txn) liveUsers(ctx context.Context, ids []string) (int, error) {
	q, arg := LiveUsersSQL(t.s.d, ids)
	rows, err := t.c.Query(ctx, q, arg)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var live bool
		if err := rows.Scan(&live); err != nil {
			return 0, err
		}
		if live {
			n++
		}
	}
	return n, rows.Err()
}

func minus(a, b []string) []string {
	if len(b) == 0 {
		return a
	}
	drop := make(map[string]bool, len(b))
	for _, s := range b {
		drop[s] = true
	}
	var out []string
	for _, s := range a {
		if !drop[s] {
			out = append(out, s)
		}
	}
	return out
}

func (t *txn) addMembers(ctx context.Context, op, groupID string, add []string) error {
	rows := make([][]any, len(add))
	for i, u := range add {
		rows[i] = []any{groupID, u}
	}
	if err := t.bulkInsert(ctx, "group_members", []string{"group_id", "user_id"}, rows, ""); err != nil {
		return fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
	}
	for _, u := range add {
		if err := t.record(ctx, "group.member.add", "group", groupID, nil, audit.Marshal(memberRef{UserID: u})); err != nil {
			return err
		}
	}
	return nil
}

func (t *txn) removeMembers(ctx context.Context, op, groupID string, del []string) error {
	if len(del) == 0 {
		return nil
	}
	in, arg := t.s.d.InList("user_id", del)
	if _, err := t.c.Exec(ctx, `DELETE FROM group_members WHERE group_id = ? AND `+in, groupID, arg); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	for _, u := range del {
		if err := t.record(ctx, "group.member.remove", "group", groupID, audit.Marshal(memberRef{UserID: u}), nil); err != nil {
			return err
		}
	}
	return nil
}

// RemoveMembers removes the users that are members: O(len(userIDs)).
func (t *txn) RemoveMembers(ctx context.Context, groupID string, userIDs []string) error {
	op := fmt.Sprintf("remove members from group %q", groupID)
	ids := dedupe(userIDs)
	if len(ids) == 0 {
		return nil
	}
	if _, err := t.lockGroup(ctx, op, groupID); err != nil {
		return err
	}
	in, arg := t.s.d.InList("user_id", ids)
	have, err := t.strings(ctx, `SELECT user_id FROM group_members WHERE group_id = ? AND `+in+` ORDER BY user_id`, groupID, arg)
	if err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	if len(have) == 0 {
		return nil
	}
	if err := t.removeMembers(ctx, op, groupID, have); err != nil {
		return err
	}
	return t.touchGroup(ctx, op, groupID)
}

// ReplaceMembers makes the member set equal userIDs (reads the whole set).
func (t *txn) ReplaceMembers(ctx context.Context, groupID string, userIDs []string) error {
	op := fmt.Sprintf("replace members of group %q", groupID)
	ids := dedupe(userIDs)
	if err := t.liveGroup(ctx, op, groupID); err != nil {
		return err
	}
	have, err := t.strings(ctx, `SELECT user_id FROM group_members WHERE group_id = ? ORDER BY user_id`, groupID)
	if err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	add := minus(ids, have)
	if len(add) > 0 {
		live, err := t.liveUsers(ctx, add)
		if err != nil {
			return fmt.Errorf("store: %s: %w", op, err)
		}
		if live != len(add) {
			return fmt.Errorf("store: %s: %d users do not exist or are deleted: %w", op, len(add)-live, store.ErrNotFound)
		}
	}
	del := minus(have, ids)
	if len(add) == 0 && len(del) == 0 {
		return nil
	}
	if err := t.removeMembers(ctx, op, groupID, del); err != nil {
		return err
	}
	if err := t.addMembers(ctx, op, groupID, add); err != nil {
		return err
	}
	return t.touchGroup(ctx, op, groupID)
}

type edgeRef struct {
	ChildID string `json:"childId"`
}

// AddGroupChild adds a group-in-group edge; an edge that would close a
// cycle is a conflict.
func (t *txn) AddGroupChild(ctx context.Context, parentID, childID string) error {
	op := fmt.Sprintf("add child %q to group %q", childID, parentID)
	if parentID == childID {
		return fmt.Errorf("store: %s: a group cannot contain itself: %w", op, store.ErrConflict)
	}
	// Both groups are locked, in id order: A→B and B→A added at once must
	// not lock them in opposite orders (a deadlock on PostgreSQL).
	for _, id := range dedupe([]string{parentID, childID}) {
		if err := t.liveGroup(ctx, op, id); err != nil {
			return err
		}
	}
	var one int
	err := t.c.QueryRow(ctx, `SELECT 1 FROM group_edges WHERE parent_id = ? AND child_id = ?`, parentID, childID).Scan(&one)
	if err == nil {
		return nil
	} else if !errors.Is(err, ErrNoRows) {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	// Is parent reachable from child? Then the edge would close a cycle.
	err = t.c.QueryRow(ctx, `WITH RECURSIVE down(id) AS (
	SELECT child_id FROM group_edges WHERE parent_id = ?
	UNION SELECT e.child_id FROM group_edges e JOIN down ON e.parent_id = down.id)
SELECT 1 FROM down WHERE id = ? LIMIT 1`, childID, parentID).Scan(&one)
	if err == nil {
		return fmt.Errorf("store: %s: would create a cycle: %w", op, store.ErrConflict)
	} else if !errors.Is(err, ErrNoRows) {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	if _, err := t.c.Exec(ctx, `INSERT INTO group_edges (parent_id, child_id) VALUES (?, ?)`, parentID, childID); err != nil {
		return fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
	}
	return t.record(ctx, "group.child.add", "group", parentID, nil, audit.Marshal(edgeRef{ChildID: childID}))
}

// RemoveGroupChild removes an edge (no-op when absent).
func (t *txn) RemoveGroupChild(ctx context.Context, parentID, childID string) error {
	n, err := t.c.Exec(ctx, `DELETE FROM group_edges WHERE parent_id = ? AND child_id = ?`, parentID, childID)
	if err != nil {
		return fmt.Errorf("store: remove child %q from group %q: %w", childID, parentID, err)
	}
	if n == 0 {
		return nil
	}
	return t.record(ctx, "group.child.remove", "group", parentID, audit.Marshal(edgeRef{ChildID: childID}), nil)
}
