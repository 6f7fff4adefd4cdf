package sqlstore

import (
	"context"
	"fmt"
	"sort"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
)

// The SCIM server (package scim) lists only the groups SCIM clients
// provisioned (source "scim:<client>"): LDAP and other sources' groups are
// not SCIM resources. It narrows GET /Groups with a filter on the group's
// source ("source sw \"scim:\""), which the store runs in SQL like every
// other filter field. SCIM clients cannot name this field themselves: the
// SCIM Group schema has no "source" attribute, so their filters never
// reach it.
func init() {
	groupColumns["source"] = column{expr: "g.source"}
}

// Member changes shaped for SCIM group PATCH (package scim uses them when
// the store provides them, AddMembers and RemoveMembers otherwise): the
// group is read and locked once, and adding or removing members is one
// statement each, which on PostgreSQL also takes the audit chain head's
// lock (the flush that follows then needs no round trip of its own). The
// head must be the last lock such a statement waits for, or it would
// deadlock with a writer that holds a row it needs and waits for the head:
// an addition's foreign-key checks lock the users' rows (KEY SHARE) at
// the end of the statement, so its SELECT takes those locks itself (FOR
// KEY SHARE) and the head is locked above an aggregate over the inserted
// rows, which exists only once every user row is locked
// (TestMemberAddBesideLockedUserWrite); a removal waits for no row (a
// group's member rows are written only under the group's lock, which the
// caller holds). The
// outcome and the audit events (one group.member.add or .remove per member
// actually added or removed, in user id order) are AddMembers' and
// RemoveMembers'.

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
	return nil
}

// memberWrite runs an INSERT or DELETE ... RETURNING user_id and returns
// the ids in order.
func (t *txn) memberWrite(ctx context.Context, q string, args ...any) ([]string, error) {
	ids, err := t.strings(ctx, q, args...)
	sort.Strings(ids)
	return ids, err
}
