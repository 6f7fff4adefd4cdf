package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// Reads shaped for the SCIM server (package scim uses them when the store
// provides them, and the generic store.Reader calls otherwise). They answer
// what the generic calls answer, with fewer statements on the hot paths of
// identity providers: a filtered lookup, a page of users, and the check
// that the members being added to a group are live users.

// SCIMListUsers is ListUsers without the count query when the page itself
// tells the total: a page that starts at the first match (or holds at
// least one) and has room left holds every remaining match, so the total
// is offset + len(items). A lookup by userName or externalId (one match
// or none) is then a single query. Otherwise it counts as ListUsers does.
func (r *reader) SCIMListUsers(ctx context.Context, q store.UserQuery) (store.Page[directory.User], error) {
	if q.Limit == 0 {
		return r.ListUsers(ctx, q)
	}
	var page store.Page[directory.User]
	w, wh, order, err := r.userQuerySQL(q)
	if err != nil {
		return page, fmt.Errorf("store: list users: %w", err)
	}
	offset := max(q.Offset, 0)
	args := append(append([]any(nil), w.args...), sqlLimit(q.Limit), offset)
	page.Items, err = r.queryUsersJoined(ctx, wh+order+" LIMIT ? OFFSET ?", order, args...)
	if err != nil {
		return page, fmt.Errorf("store: list users: %w", err)
	}
	if (q.Limit < 0 || len(page.Items) < q.Limit) && (offset == 0 || len(page.Items) > 0) {
		page.Total = int64(offset + len(page.Items))
		return page, nil
	}
	if err := r.c.QueryRow(ctx, "SELECT count(*) FROM users u"+wh, w.args...).Scan(&page.Total); err != nil {
		return page, fmt.Errorf("store: list users: count: %w", err)
	}
	return page, nil
}

// SCIMListUsersExtras is SCIMListUsers and SCIMUserExtras together in one
// statement: the page of users with their e-mails, grants and groups (a
// filtered lookup is then one round trip, where it was two). The grants
// carry what the SCIM representation shows of them (user, firm, service,
// role, all offices, offices; no provenance, version or times), in
// SCIMUserExtras' order; groups only ID and DisplayName, by id. The page
// is selected first and the grants and groups read for its users only.
func (r *reader) SCIMListUsersExtras(ctx context.Context, q store.UserQuery) (store.Page[directory.User], map[string][]directory.Grant, map[string][]directory.Group, error) {
	grants := map[string][]directory.Grant{}
	groups := map[string][]directory.Group{}
	if q.Limit == 0 {
		page, err := r.ListUsers(ctx, q)
		return page, grants, groups, err
	}
	var page store.Page[directory.User]
	w, wh, order, err := r.userQuerySQL(q)
	if err != nil {
		return page, nil, nil, fmt.Errorf("store: list users: %w", err)
	}
	offset := max(q.Offset, 0)
	args := append(append([]any(nil), w.args...), sqlLimit(q.Limit), offset)
	page.Items, err = r.queryUsersExtras(ctx, wh+order+" LIMIT ? OFFSET ?", order, grants, groups, args...)
	if err != nil {
		return page, nil, nil, fmt.Errorf("store: list users: %w", err)
	}
	if (q.Limit < 0 || len(page.Items) < q.Limit) && (offset == 0 || len(page.Items) > 0) {
		page.Total = int64(offset + len(page.Items))
		return page, grants, groups, nil
	}
	if err := r.c.QueryRow(ctx, "SELECT count(*) FROM users u"+wh, w.args...).Scan(&page.Total); err != nil {
		return page, nil, nil, fmt.Errorf("store: list users: count: %w", err)
	}
	return page, grants, groups, nil
}

// SCIMLockUserExtras is SCIMLockUser with the user's grants and groups
// (as SCIMListUsersExtras returns them) in the same statement: a PUT or
// PATCH then renders its response without reading again.
func (t *txn) SCIMLockUserExtras(ctx context.Context, id string) (directory.User, []directory.Grant, []directory.Group, error) {
	op := fmt.Sprintf("get user %q", id)
	grants := map[string][]directory.Grant{}
	groups := map[string][]directory.Group{}
	us, err := t.queryUsersExtras(ctx, "WHERE u.id = ?"+t.userLock(), "", grants, groups, id)
	if err != nil {
		return directory.User{}, nil, nil, fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
	}
	if len(us) == 0 {
		return directory.User{}, nil, nil, fmt.Errorf("store: %s: %w", op, store.ErrNotFound)
	}
	return us[0], grants[id], groups[id], nil
}

// queryUsersExtras is queryUsersJoined that also reads each selected
// user's grants and groups into the maps (correlated JSON aggregates over
// the selected rows only).
func (r *reader) queryUsersExtras(ctx context.Context, tail, order string, grants map[string][]directory.Grant, groups map[string][]directory.Group, args ...any) ([]directory.User, error) {
	var gExpr, mExpr string
	if r.s.d.Name == "postgres" {
		gExpr = `(SELECT json_agg(json_build_array(gr.firm_number, gr.service, gr.role, gr.all_offices, gr.offices)
 ORDER BY gr.firm_number, gr.service, gr.role, gr.id) FROM grants gr WHERE gr.user_id = p.id)`
		// The groups are read from the user's memberships, each group by
		// its primary key: the LATERAL with OFFSET 0 is not pulled up into
		// a join the planner may reorder, and deleted_at is tested outside
		// it, so it cannot prefer a partial index "WHERE deleted_at IS NULL"
		// either. With missing or stale statistics on groups (a fresh
		// install) PostgreSQL otherwise scans every live group through
		// groups_display_name_uq and probes the memberships once per group:
		// O(groups) per user rendered (TestSCIMLookupPlans).
		mExpr = `(SELECT json_agg(json_build_array(g.id, g.display_name) ORDER BY g.id)
 FROM group_members m CROSS JOIN LATERAL (SELECT g.id, g.display_name, g.deleted_at FROM groups g WHERE g.id = m.group_id OFFSET 0) g
 WHERE m.user_id = p.id AND g.deleted_at IS NULL)`
	} else {
		gExpr = `(SELECT json_group_array(json_array(gr.firm_number, gr.service, gr.role, gr.all_offices, json(gr.offices))
 ORDER BY gr.firm_number, gr.service, gr.role, gr.id) FROM grants gr WHERE gr.user_id = p.id)`
		mExpr = `(SELECT json_group_array(json_array(g.id, g.display_name) ORDER BY g.id)
 FROM group_members m JOIN groups g ON g.id = m.group_id WHERE m.user_id = p.id AND g.deleted_at IS NULL)`
	}
	rows, err := r.c.Query(ctx, `SELECT u.id, u.user_name, u.external_id, u.email, u.given_name, u.family_name, u.display_name,
u.active, u.user_type, u.firm_number, u.usual_role, u.location, u.attrs, u.version, u.created_at, u.updated_at, u.deleted_at,
COALESCE(e.idx, -1), COALESCE(e.value, ''), COALESCE(e.type, ''), COALESCE(e.is_primary, `+r.s.d.falseLiteral()+`), u.x_grants, u.x_groups
FROM (SELECT p.*, `+gExpr+` AS x_grants, `+mExpr+` AS x_groups FROM (SELECT * FROM users u `+tail+`) p) u
LEFT JOIN user_emails e ON e.user_id = u.id`+joinedOrder(order), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []directory.User
	for rows.Next() {
		var u directory.User
		var idx int64
		var e directory.Email
		var xg, xm []byte
		if err := rows.Scan(userDest(&u, &idx, &e.Value, &e.Type, &e.Primary, jscan{&xg}, jscan{&xm})...); err != nil {
			return nil, err
		}
		if n := len(out); n == 0 || out[n-1].ID != u.ID {
			out = append(out, u)
			if err := decodeExtras(u.ID, xg, xm, grants, groups); err != nil {
				return nil, err
			}
		}
		if idx >= 0 {
			last := &out[len(out)-1]
			last.Emails = append(last.Emails, e)
		}
	}
	return out, rows.Err()
}

// decodeExtras decodes a user's grants ([[firm, service, role, all
// offices, offices], ...]) and groups ([[id, displayName], ...]), JSON
// arrays that are NULL or [] when there are none.
func decodeExtras(userID string, xg, xm []byte, grants map[string][]directory.Grant, groups map[string][]directory.Group) error {
	if len(xg) > 2 {
		var rows [][5]json.RawMessage
		if err := json.Unmarshal(xg, &rows); err != nil {
			return fmt.Errorf("grants of user %s: %w", userID, err)
		}
		gs := make([]directory.Grant, len(rows))
		for i, r := range rows {
			g := &gs[i]
			g.UserID = userID
			g.AllOffices = string(r[3]) == "true" || string(r[3]) == "1"
			if err := errors.Join(json.Unmarshal(r[0], &g.FirmNumber), json.Unmarshal(r[1], &g.Service), json.Unmarshal(r[2], &g.Role)); err != nil {
				return fmt.Errorf("grants of user %s: %w", userID, err)
			}
			if string(r[4]) != "null" {
				if err := unmarshalList(r[4], &g.Offices); err != nil {
					return fmt.Errorf("grants of user %s: offices: %w", userID, err)
				}
			}
		}
		grants[userID] = gs
	}
	if len(xm) > 2 {
		var rows [][2]string
		if err := json.Unmarshal(xm, &rows); err != nil {
			return fmt.Errorf("groups of user %s: %w", userID, err)
		}
		gs := make([]directory.Group, len(rows))
		for i, r := range rows {
			gs[i] = directory.Group{ID: r[0], DisplayName: r[1]}
		}
		groups[userID] = gs
	}
	return nil
}

// SCIMUserExtras returns, for each of userIDs, its grants (as ListGrants
// orders them) and the live groups it is a direct member of (ordered by
// id; only ID and DisplayName are set): one statement for any number of
// users, where ListGrants and ListUserGroups take two per user.
func (r *reader) SCIMUserExtras(ctx context.Context, userIDs []string) (map[string][]directory.Grant, map[string][]directory.Group, error) {
	grants := map[string][]directory.Grant{}
	groups := map[string][]directory.Group{}
	if len(userIDs) == 0 {
		return grants, groups, nil
	}
	op := fmt.Sprintf("roles and groups of %d users", len(userIDs))
	in1, arg1 := r.inOrEq("user_id", userIDs)
	in2, arg2 := r.inOrEq("m.user_id", userIDs)
	f := r.s.d.falseLiteral()
	rows, err := r.c.Query(ctx, `SELECT 0, user_id, firm_number, service, role, all_offices, offices, provenance, version, created_at, updated_at, id, ''
FROM grants WHERE `+in1+`
UNION ALL
SELECT 1, m.user_id, '', '', '', `+f+`, NULL, NULL, 0, NULL, NULL, g.id, g.display_name
FROM group_members m JOIN groups g ON g.id = m.group_id WHERE `+in2+` AND g.deleted_at IS NULL
ORDER BY 1, 2, 3, 4, 5, 12`, arg1, arg2)
	if err != nil {
		return nil, nil, fmt.Errorf("store: %s: %w", op, err)
	}
	defer rows.Close()
	for rows.Next() {
		var kind int
		var g directory.Grant
		var offices, prov []byte
		var created, updated *time.Time
		var name string
		if err := rows.Scan(&kind, &g.UserID, &g.FirmNumber, &g.Service, &g.Role, &g.AllOffices, jscan{&offices}, jscan{&prov},
			&g.Version, ntscan{&created}, ntscan{&updated}, &g.ID, &name); err != nil {
			return nil, nil, fmt.Errorf("store: %s: %w", op, err)
		}
		if kind == 1 {
			groups[g.UserID] = append(groups[g.UserID], directory.Group{ID: g.ID, DisplayName: name})
			continue
		}
		if created != nil {
			g.CreatedAt = *created
		}
		if updated != nil {
			g.UpdatedAt = *updated
		}
		if err := unmarshalList(offices, &g.Offices); err != nil {
			return nil, nil, fmt.Errorf("store: %s: %w", op, err)
		}
		if len(prov) > 0 {
			if err := json.Unmarshal(prov, &g.Provenance); err != nil {
				return nil, nil, fmt.Errorf("store: %s: %w", op, err)
			}
		}
		grants[g.UserID] = append(grants[g.UserID], g)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("store: %s: %w", op, err)
	}
	return grants, groups, nil
}

// SCIMMissingUsers returns the ids among ids that name no live
// (non-deleted) user, in the order given: one query, reading no user rows.
func (r *reader) SCIMMissingUsers(ctx context.Context, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	in, arg := r.inOrEq("id", ids)
	live, err := r.strings(ctx, `SELECT id FROM users WHERE `+in+` AND deleted_at IS NULL`, arg)
	if err != nil {
		return nil, fmt.Errorf("store: check %d users: %w", len(ids), err)
	}
	have := make(map[string]bool, len(live))
	for _, id := range live {
		have[id] = true
	}
	var missing []string
	for _, id := range ids {
		if !have[id] {
			missing = append(missing, id)
		}
	}
	return missing, nil
}

// inOrEq is the dialect's IN-list predicate, or "col = ?" for one value: a
// single lookup (the common case: one user rendered, one member added)
// then needs no list argument (on SQLite, a json_each scan).
func (r *reader) inOrEq(col string, vals []string) (string, any) {
	if len(vals) == 1 {
		return col + " = ?", vals[0]
	}
	return r.s.d.InList(col, vals)
}

// SCIMLockUser reads a user in this transaction for an update that
// follows, deleted or not, like GetUser. On PostgreSQL the row is locked
// FOR NO KEY UPDATE, the lock the UPDATE itself takes: it excludes every
// other update of the user, but not the KEY SHARE lock of a foreign-key
// check (a group member or grant being added for the user meanwhile), so
// that such a writer, which may hold the audit chain head, is never
// waiting for this one.
func (t *txn) SCIMLockUser(ctx context.Context, id string) (directory.User, error) {
	op := fmt.Sprintf("get user %q", id)
	us, err := t.queryUsersJoined(ctx, "WHERE u.id = ?"+t.userLock(), "", id)
	if err != nil {
		return directory.User{}, fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
	}
	if len(us) == 0 {
		return directory.User{}, fmt.Errorf("store: %s: %w", op, store.ErrNotFound)
	}
	return us[0], nil
}

// userLock is the row lock of SCIMLockUser (see there).
func (t *txn) userLock() string {
	lock := t.forUpdate()
	if lock != "" && t.s.d.Name == "postgres" {
		lock = " FOR NO KEY UPDATE"
	}
	return lock
}

// queryUsersJoined is queryUsers in one statement: the users selected by
// tail (a WHERE/ORDER BY/LIMIT over "users u") joined with their e-mails.
// order repeats tail's ORDER BY for the outer query (a join does not keep
// the subquery's order).
func (r *reader) queryUsersJoined(ctx context.Context, tail, order string, args ...any) ([]directory.User, error) {
	rows, err := r.c.Query(ctx, `SELECT u.id, u.user_name, u.external_id, u.email, u.given_name, u.family_name, u.display_name,
u.active, u.user_type, u.firm_number, u.usual_role, u.location, u.attrs, u.version, u.created_at, u.updated_at, u.deleted_at,
COALESCE(e.idx, -1), COALESCE(e.value, ''), COALESCE(e.type, ''), COALESCE(e.is_primary, `+r.s.d.falseLiteral()+`)
FROM (SELECT * FROM users u `+tail+`) u LEFT JOIN user_emails e ON e.user_id = u.id`+joinedOrder(order), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []directory.User
	for rows.Next() {
		var u directory.User
		var idx int64
		var e directory.Email
		if err := rows.Scan(userDest(&u, &idx, &e.Value, &e.Type, &e.Primary)...); err != nil {
			return nil, err
		}
		if n := len(out); n == 0 || out[n-1].ID != u.ID {
			out = append(out, u)
		}
		if idx >= 0 {
			last := &out[len(out)-1]
			last.Emails = append(last.Emails, e)
		}
	}
	return out, rows.Err()
}

// joinedOrder is the outer ORDER BY of queryUsersJoined: the page's order,
// then each user's e-mails in their stored order.
func joinedOrder(order string) string {
	if order == "" {
		return " ORDER BY u.id, e.idx"
	}
	return order + ", e.idx"
}

func (d *Dialect) falseLiteral() string {
	if d.Name == "postgres" {
		return "false"
	}
	return "0"
}

// SCIMUpdateUser is UpdateUser for a caller that has read cur with
// SCIMLockUser in this same transaction (a SCIM PUT or PATCH, which needs
// the stored user to compute the new one): it does not read the user again.
// When the UPDATE is the SCIM write's last statement (e-mails, link and
// grants untouched: same e-mails, same externalId, not deactivated) it is
// sent on PostgreSQL with the audit flush and the COMMIT, in one round trip
// (execWithFlush); the audit chain head is locked there, after the user's
// row, for that statement and the COMMIT only (flushChainInSQL). Outcome,
// version and audit event are UpdateUser's.
func (t *txn) SCIMUpdateUser(ctx context.Context, u *directory.User, cur directory.User, expectVersion int64) error {
	op := fmt.Sprintf("update user %q", u.ID)
	if u.ID == "" || u.ID != cur.ID {
		return fmt.Errorf("store: %s: the locked user is %q", op, cur.ID)
	}
	if err := normalizeUser(u); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	last := u.ExternalID == cur.ExternalID && (u.Active || !cur.Active)
	return t.updateLockedUser(ctx, op, u, cur, expectVersion, last)
}

func sameEmails(a, b []directory.Email) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
