package sqlstore

import (
	"context"
	"fmt"
	"sort"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// The SCIM server (package scim) lists a SCIM client only the groups it
// provisioned (source "scim:<client>"): LDAP's and other clients' groups
// are not its resources. It narrows GET /Groups with a filter on the
// group's source ("source eq \"scim:<client>\""), which the store runs in SQL like every
// other filter field. SCIM clients cannot name this field themselves: the
// SCIM Group schema has no "source" attribute, so their filters never
// reach it.
func init() {
	groupColumns["source"] = column{expr: "g.source"}
}

// Member changes shaped for SCIM group PATCH (package scim uses them when
// the store provides them, AddMembers and RemoveMembers otherwise): the
// group is read and locked once, and adding or removing members is one
// statement each; SCIMLockGroupChangeMembers does both in one statement
// (one round trip) for a PATCH that only adds or only removes members. Lock
// order: the group's row, then (an addition) the users' rows FOR KEY SHARE,
// taken by the statement's SELECT itself, and last, in the flush's own
// statement sent with COMMIT, the audit chain head (flushChainInSQL): the
// head is never held while a member write waits for a row
// (TestMemberAddBesideLockedUserWrite). A removal waits for no row beyond
// the group's (a group's member rows are written only under the group's
// lock). The outcome and the audit events (one group.member.add or .remove
// per member actually added or removed, in user id order) are AddMembers'
// and RemoveMembers'.

// SCIMLockGroup reads a group in this transaction for the member changes
// that follow (FOR UPDATE on PostgreSQL), deleted or not, like GetGroup.
func (t *txn) SCIMLockGroup(ctx context.Context, id string) (directory.Group, error) {
	return t.lockGroup(ctx, fmt.Sprintf("get group %q", id), id)
}

// SCIMAddMembers adds the live users among userIDs that are not members
// yet to a group the caller locked with SCIMLockGroup (and found live) in
// this transaction. missing lists the ids that name no live user, in
// order; when there are any, the caller must fail the transaction (the
// live ones may have been added).
func (t *txn) SCIMAddMembers(ctx context.Context, groupID string, userIDs []string) (missing []string, err error) {
	op := fmt.Sprintf("add members to group %q", groupID)
	ids := dedupe(userIDs)
	if len(ids) == 0 {
		return nil, nil
	}
	in, arg := t.inOrEq("id", ids)
	// The users' rows are locked FOR KEY SHARE first (on PostgreSQL; the
	// foreign-key check would take that lock at the end of the statement
	// anyway). The audit chain head is not locked here: the flush locks it
	// in its own statement, the transaction's last before COMMIT
	// (flushChainInSQL), so it is always the last lock a member addition
	// waits for and is never held while this statement waits for a user
	// row (TestMemberAddBesideLockedUserWrite).
	keyShare := ""
	if t.s.d.WriteCTE {
		keyShare = " FOR KEY SHARE"
	}
	added, err := t.memberWrite(ctx, `INSERT INTO group_members (group_id, user_id) SELECT ?, id FROM users WHERE `+in+
		` AND deleted_at IS NULL`+keyShare+` ON CONFLICT DO NOTHING RETURNING user_id`, groupID, arg)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
	}
	if len(added) < len(ids) { // already members, or not live users
		if missing, err = t.SCIMMissingUsers(ctx, ids); err != nil || len(missing) > 0 {
			return missing, err
		}
	}
	for _, u := range added {
		if err := t.record(ctx, "group.member.add", "group", groupID, nil, audit.Marshal(memberRef{UserID: u})); err != nil {
			return nil, err
		}
	}
	if len(added) > 0 {
		return nil, t.touchGroup(ctx, op, groupID)
	}
	return nil, nil
}

// SCIMRemoveMembers removes the members among userIDs from a group the
// caller locked with SCIMLockGroup in this transaction; ids that are not
// members are ignored.
func (t *txn) SCIMRemoveMembers(ctx context.Context, groupID string, userIDs []string) error {
	op := fmt.Sprintf("remove members from group %q", groupID)
	ids := dedupe(userIDs)
	if len(ids) == 0 {
		return nil
	}
	in, arg := t.inOrEq("user_id", ids)
	removed, err := t.memberWrite(ctx, `DELETE FROM group_members WHERE group_id = ? AND `+in+` RETURNING user_id`, groupID, arg)
	if err != nil {
		return fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
	}
	for _, u := range removed {
		if err := t.record(ctx, "group.member.remove", "group", groupID, audit.Marshal(memberRef{UserID: u}), nil); err != nil {
			return err
		}
	}
	if len(removed) > 0 {
		return t.touchGroup(ctx, op, groupID)
	}
	return nil
}

// memberWrite runs an INSERT or DELETE ... RETURNING user_id and returns
// the ids in order.
func (t *txn) memberWrite(ctx context.Context, q string, args ...any) ([]string, error) {
	ids, err := t.strings(ctx, q, args...)
	sort.Strings(ids)
	return ids, err
}

// SCIMLockGroupChangeMembers is SCIMLockGroup then SCIMAddMembers (add)
// or SCIMRemoveMembers (which give the group a new version when a member
// changed; g is the group as locked, before that), in one statement on
// PostgreSQL: the group's row is locked first, and the members are
// written only when the group exists and is not deleted. visible(group) is the caller's rule for the group being
// its to change: when it says no (or the group is missing) nothing is
// recorded and the caller must fail the transaction, which undoes the
// write. missing is SCIMAddMembers'.
func (t *txn) SCIMLockGroupChangeMembers(ctx context.Context, groupID string, add bool, userIDs []string, visible func(directory.Group) bool) (g directory.Group, missing []string, err error) {
	ids := dedupe(userIDs)
	if !t.s.d.WriteCTE || len(ids) == 0 {
		if g, err = t.SCIMLockGroup(ctx, groupID); err != nil || g.DeletedAt != nil || !visible(g) {
			return g, nil, err
		}
		if add {
			missing, err = t.SCIMAddMembers(ctx, groupID, ids)
			return g, missing, err
		}
		return g, nil, t.SCIMRemoveMembers(ctx, groupID, ids)
	}
	op := fmt.Sprintf("change members of group %q", groupID)
	var w string
	var args []any
	if add {
		in, arg := t.inOrEq("u.id", ids)
		w = `INSERT INTO group_members (group_id, user_id) SELECT ?, u.id FROM users u WHERE ` + in +
			` AND u.deleted_at IS NULL AND EXISTS (SELECT 1 FROM g WHERE g.deleted_at IS NULL) FOR KEY SHARE OF u ON CONFLICT DO NOTHING RETURNING user_id`
		args = []any{groupID, groupID, arg}
	} else {
		in, arg := t.inOrEq("m.user_id", ids)
		w = `DELETE FROM group_members m WHERE m.group_id = ? AND ` + in +
			` AND EXISTS (SELECT 1 FROM g WHERE g.deleted_at IS NULL) RETURNING m.user_id`
		args = []any{groupID, groupID, arg}
	}
	// The main query reads g (locking the group) before its select list
	// runs w; w's EXISTS reads g's one materialized row. v gives the group
	// a new version and lastModified when w changed a member (touchGroup,
	// in the same statement); it reads g, so the lock comes first, and the
	// row returned is the group as locked, before v: the caller checks
	// If-Match against that version.
	args = append(args, t.s.d.Time(t.s.nowUTC()), groupID)
	rows, err := t.c.Query(ctx, `WITH g AS (`+groupSelect+` WHERE g.id = ? FOR UPDATE), w AS (`+w+`),
v AS (UPDATE groups SET version = groups.version + 1, updated_at = ? FROM g WHERE groups.id = ? AND groups.id = g.id AND g.deleted_at IS NULL
 AND EXISTS (SELECT 1 FROM w))
SELECT g.id, g.source, g.source_key, g.external_id, g.display_name, g.dn, g.attrs, g.version, g.created_at, g.updated_at, g.deleted_at,
(SELECT array_agg(user_id ORDER BY user_id) FROM w) FROM g`, args...)
	if err != nil {
		return g, nil, fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
	}
	var changed []string
	found := false
	for rows.Next() {
		found = true
		if err := rows.Scan(&g.ID, &g.Source, &g.SourceKey, &g.ExternalID, &g.DisplayName, &g.DN, jscan{(*[]byte)(&g.Attrs)},
			&g.Version, tscan{&g.CreatedAt}, tscan{&g.UpdatedAt}, ntscan{&g.DeletedAt}, &changed); err != nil {
			rows.Close()
			return g, nil, fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return g, nil, fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
	}
	if !found {
		return g, nil, fmt.Errorf("store: get group %q: %w", groupID, store.ErrNotFound)
	}
	if g.DeletedAt != nil || !visible(g) {
		return g, nil, nil
	}
	if add && len(changed) < len(ids) { // already members, or not live users
		if missing, err = t.SCIMMissingUsers(ctx, ids); err != nil || len(missing) > 0 {
			return g, missing, err
		}
	}
	action, before, after := "group.member.remove", true, false
	if add {
		action, before, after = "group.member.add", false, true
	}
	for _, u := range changed {
		ref := audit.Marshal(memberRef{UserID: u})
		var b, a []byte
		if before {
			b = ref
		}
		if after {
			a = ref
		}
		if err := t.record(ctx, action, "group", groupID, b, a); err != nil {
			return g, nil, err
		}
	}
	return g, nil, nil
}
