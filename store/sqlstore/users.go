package sqlstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

const userSelect = `SELECT u.id, u.user_name, u.external_id, u.email, u.given_name, u.family_name, u.display_name,
u.active, u.user_type, u.firm_number, u.usual_role, u.location, u.attrs, u.version, u.created_at, u.updated_at, u.deleted_at
FROM users u`

const userWriteCols = `id, user_name, user_name_lc, external_id, email, email_lc, given_name, family_name,
display_name, display_name_lc, active, user_type, firm_number, usual_role, location, attrs, version,
created_at, updated_at, deleted_at`

const userWriteN = 20

var userColList = strings.Fields(strings.ReplaceAll(userWriteCols, ",", " "))

const userUpsertSuffix = ` ON CONFLICT (id) DO UPDATE SET user_name = excluded.user_name, user_name_lc = excluded.user_name_lc,
external_id = excluded.external_id, email = excluded.email, email_lc = excluded.email_lc, given_name = excluded.given_name,
family_name = excluded.family_name, display_name = excluded.display_name, display_name_lc = excluded.display_name_lc,
active = excluded.active, user_type = excluded.user_type, firm_number = excluded.firm_number,
usual_role = excluded.usual_role, location = excluded.location, attrs = excluded.attrs, version = excluded.version,
updated_at = excluded.updated_at, deleted_at = excluded.deleted_at`

func (r *reader) userArgs(args []any, u *directory.User) []any {
	var del any
	if u.DeletedAt != nil {
		del = r.s.d.Time(*u.DeletedAt)
	}
	return append(args, u.ID, u.UserName, strings.ToLower(u.UserName), u.ExternalID, u.Email, strings.ToLower(u.Email),
		u.GivenName, u.FamilyName, u.DisplayName, strings.ToLower(u.DisplayName), u.Active, u.UserType, u.FirmNumber,
		u.UsualRole, u.Location, jarg(u.Attrs), u.Version, r.s.d.Time(u.CreatedAt), r.s.d.Time(u.UpdatedAt), del)
}

// userDest is the scan destination of a users row's columns, in
// userSelect's order (id, user_name, ... deleted_at), then extra.
func userDest(u *directory.User, extra ...any) []any {
	return append([]any{&u.ID, &u.UserName, &u.ExternalID, &u.Email, &u.GivenName, &u.FamilyName, &u.DisplayName,
		&u.Active, &u.UserType, &u.FirmNumber, &u.UsualRole, &u.Location, jscan{(*[]byte)(&u.Attrs)}, &u.Version,
		tscan{&u.CreatedAt}, tscan{&u.UpdatedAt}, ntscan{&u.DeletedAt}}, extra...)
}

// queryUsers selects users (with their e-mails) matching the SQL tail.
func (r *reader) queryUsers(ctx context.Context, tail string, args ...any) ([]directory.User, error) {
	rows, err := r.c.Query(ctx, userSelect+" "+tail, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []directory.User
	for rows.Next() {
		var u directory.User
		if err := rows.Scan(userDest(&u)...); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	if len(out) == 0 {
		return out, nil
	}
	ids := make([]string, len(out))
	idx := make(map[string]int, len(out))
	for i, u := range out {
		ids[i] = u.ID
		idx[u.ID] = i
	}
	in, arg := r.s.d.InList("user_id", ids)
	erows, err := r.c.Query(ctx, `SELECT user_id, value, type, is_primary FROM user_emails WHERE `+in+` ORDER BY user_id, idx`, arg)
	if err != nil {
		return nil, err
	}
	defer erows.Close()
	for erows.Next() {
		var id string
		var e directory.Email
		if err := erows.Scan(&id, &e.Value, &e.Type, &e.Primary); err != nil {
			return nil, err
		}
		i := idx[id]
		out[i].Emails = append(out[i].Emails, e)
	}
	return out, erows.Err()
}

func (r *reader) oneUser(ctx context.Context, op, tail string, args ...any) (directory.User, error) {
	us, err := r.queryUsers(ctx, tail+" LIMIT 1", args...)
	if err != nil {
		return directory.User{}, fmt.Errorf("store: %s: %w", op, r.s.mapErr(err))
	}
	if len(us) == 0 {
		return directory.User{}, fmt.Errorf("store: %s: %w", op, store.ErrNotFound)
	}
	return us[0], nil
}

// GetUser returns the user with id, deleted or not.
func (r *reader) GetUser(ctx context.Context, id string) (directory.User, error) {
	return r.oneUser(ctx, fmt.Sprintf("get user %q", id), "WHERE u.id = ?", id)
}

// GetUserByUserName finds a non-deleted user by userName, case-insensitively.
func (r *reader) GetUserByUserName(ctx context.Context, userName string) (directory.User, error) {
	return r.oneUser(ctx, fmt.Sprintf("get user by userName %q", userName),
		"WHERE u.user_name_lc = ? AND u.deleted_at IS NULL", strings.ToLower(userName))
}

// GetUserByEmail finds a non-deleted user by primary e-mail, case-insensitively.
func (r *reader) GetUserByEmail(ctx context.Context, email string) (directory.User, error) {
	if email == "" {
		return directory.User{}, fmt.Errorf("store: get user by email: %w", store.ErrNotFound)
	}
	return r.oneUser(ctx, fmt.Sprintf("get user by email %q", email),
		"WHERE u.email_lc = ? AND u.email_lc <> '' AND u.deleted_at IS NULL", strings.ToLower(email))
}

// FindUserByLink returns the user a source link points to.
func (r *reader) FindUserByLink(ctx context.Context, source, key string) (directory.User, error) {
	return r.oneUser(ctx, fmt.Sprintf("find user by link %s/%q", source, key),
		"JOIN source_links l ON l.user_id = u.id WHERE l.source = ? AND l.link_key = ?", source, key)
}

const linkSelect = `SELECT user_id, source, link_key, dn, gone_at, last_seen_at FROM source_links`

func (r *reader) queryLinks(ctx context.Context, tail string, args ...any) ([]directory.SourceLink, error) {
	var out []directory.SourceLink
	err := r.eachLink(ctx, linkSelect+" "+tail, args, func(l directory.SourceLink) error {
		out = append(out, l)
		return nil
	})
	return out, err
}

// eachLink runs q (linkSelect and a tail) and calls fn with each link read.
func (r *reader) eachLink(ctx context.Context, q string, args []any, fn func(directory.SourceLink) error) error {
	rows, err := r.c.Query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var l directory.SourceLink
		if err := rows.Scan(&l.UserID, &l.Source, &l.Key, &l.DN, ntscan{&l.GoneAt}, tscan{&l.LastSeenAt}); err != nil {
			return err
		}
		if err := fn(l); err != nil {
			return err
		}
	}
	return rows.Err()
}

// ListUserLinks returns a user's source links by source and key.
func (r *reader) ListUserLinks(ctx context.Context, userID string) ([]directory.SourceLink, error) {
	ls, err := r.queryLinks(ctx, "WHERE user_id = ? ORDER BY source, link_key", userID)
	if err != nil {
		return nil, fmt.Errorf("store: list links of user %q: %w", userID, err)
	}
	return ls, nil
}

// ListLinks pages a source's links by key.
func (r *reader) ListLinks(ctx context.Context, source, after string, limit int) ([]directory.SourceLink, error) {
	ls, err := r.queryLinks(ctx, "WHERE source = ? AND link_key > ? ORDER BY link_key LIMIT ?", source, after, sqlLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("store: list links of %s: %w", source, err)
	}
	return ls, nil
}

// ScanLinks streams a source's links in storage order (Dialect.NoIndex).
func (r *reader) ScanLinks(ctx context.Context, source string, fn func(directory.SourceLink) error) error {
	var fnErr error
	err := r.eachLink(ctx, linkSelect+r.s.d.NoIndex+` WHERE source = ?`, []any{source}, func(l directory.SourceLink) error {
		fnErr = fn(l)
		return fnErr
	})
	if err != nil && fnErr == nil {
		return fmt.Errorf("store: scan links of %s: %w", source, err)
	}
	return err
}

func sqlLimit(limit int) int64 {
	if limit <= 0 {
		return math.MaxInt64
	}
	return int64(limit)
}

// userQuerySQL translates q's filter and sort into a WHERE clause (with
// its arguments in w.args) and an ORDER BY clause over users u.
func (r *reader) userQuerySQL(q store.UserQuery) (w *where, wh, order string, err error) {
	w = &where{d: r.s.d}
	var conds []string
	if !q.IncludeDeleted {
		conds = append(conds, "u.deleted_at IS NULL")
	}
	if q.Filter != nil {
		s, err := w.filter(q.Filter, userColumns, userPaths)
		if err != nil {
			return nil, "", "", err
		}
		conds = append(conds, s)
	}
	if order, err = orderBy(q.SortBy, q.SortDesc, userColumns, "u.id"); err != nil {
		return nil, "", "", err
	}
	if len(conds) > 0 {
		wh = " WHERE " + strings.Join(conds, " AND ")
	}
	return w, wh, order, nil
}

// ListUsers runs a filtered, sorted, paged query in SQL.
func (r *reader) ListUsers(ctx context.Context, q store.UserQuery) (store.Page[directory.User], error) {
	var page store.Page[directory.User]
	w, wh, order, err := r.userQuerySQL(q)
	if err != nil {
		return page, fmt.Errorf("store: list users: %w", err)
	}
	if err := r.c.QueryRow(ctx, "SELECT count(*) FROM users u"+wh, w.args...).Scan(&page.Total); err != nil {
		return page, fmt.Errorf("store: list users: count: %w", err)
	}
	if q.Limit == 0 || page.Total == 0 {
		return page, nil
	}
	args := append(append([]any(nil), w.args...), sqlLimit(q.Limit), max(q.Offset, 0))
	page.Items, err = r.queryUsers(ctx, wh+order+" LIMIT ? OFFSET ?", args...)
	if err != nil {
		return page, fmt.Errorf("store: list users: %w", err)
	}
	return page, nil
}

// parallelMin: bulk writes of at least this many users normalize and
// encode on two goroutines (below it the goroutine costs more than it saves).
const parallelMin = 256

// normalizeUsers normalizes every user, in two halves at once for a bulk
// write; on failure it returns the index of the first user that failed.
func normalizeUsers(users []*directory.User) (int, error) {
	errs := make([]error, len(users))
	norm := func(us []*directory.User, off int) {
		for i, u := range us {
			errs[off+i] = normalizeUser(u)
		}
	}
	if half := len(users) / 2; len(users) >= parallelMin {
		done := make(chan struct{})
		go func() { norm(users[half:], half); close(done) }()
		norm(users[:half], 0)
		<-done
	} else {
		norm(users, 0)
	}
	for i, err := range errs {
		if err != nil {
			return i, err
		}
	}
	return 0, nil
}

// normalizeUser brings u to its stored form.
func normalizeUser(u *directory.User) error {
	attrs, err := canonicalJSON(u.Attrs)
	if err != nil {
		return fmt.Errorf("attrs: %w", err)
	}
	u.Attrs = attrs
	var emails []directory.Email
	for _, e := range u.Emails {
		if e.Value != "" {
			emails = append(emails, e)
		}
	}
	u.Emails = emails
	if u.Email == "" {
		for _, e := range u.Emails {
			if e.Primary {
				u.Email = e.Value
				break
			}
		}
	} else if len(u.Emails) == 0 {
		u.Emails = []directory.Email{{Value: u.Email, Primary: true}}
	}
	if u.UserName == "" {
		return fmt.Errorf("empty userName")
	}
	return nil
}

// canonicalJSON validates a JSON document and re-encodes it with sorted
// keys and no insignificant space, so equal documents compare equal.
func canonicalJSON(b json.RawMessage) (json.RawMessage, error) {
	if len(bytes.TrimSpace(b)) == 0 || string(bytes.TrimSpace(b)) == "null" {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	out, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// sameUser reports whether a and b hold the same content (ignoring
// identity, version and timestamps).
func sameUser(a, b directory.User) bool {
	a.Version, b.Version = 0, 0
	a.CreatedAt, b.CreatedAt = time.Time{}, time.Time{}
	a.UpdatedAt, b.UpdatedAt = time.Time{}, time.Time{}
	a.DeletedAt, b.DeletedAt = nil, nil
	if len(a.Emails) == 0 {
		a.Emails = nil
	}
	if len(b.Emails) == 0 {
		b.Emails = nil
	}
	if !bytes.Equal(a.Attrs, b.Attrs) {
		return false
	}
	a.Attrs, b.Attrs = nil, nil
	return reflect.DeepEqual(a, b)
}

// checkUserUnique returns ErrConflict when another non-deleted user holds
// u's userName or e-mail.
func (t *txn) checkUserUnique(ctx context.Context, op string, u *directory.User) error {
	var id string
	err := t.c.QueryRow(ctx, `SELECT id FROM users WHERE user_name_lc = ? AND deleted_at IS NULL AND id <> ? LIMIT 1`,
		strings.ToLower(u.UserName), u.ID).Scan(&id)
	if err == nil {
		return fmt.Errorf("store: %s: userName %q is taken: %w", op, u.UserName, store.ErrConflict)
	} else if !errors.Is(err, ErrNoRows) {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	if u.Email == "" {
		return nil
	}
	err = t.c.QueryRow(ctx, `SELECT id FROM users WHERE email_lc = ? AND email_lc <> '' AND deleted_at IS NULL AND id <> ? LIMIT 1`,
		strings.ToLower(u.Email), u.ID).Scan(&id)
	if err == nil {
		return fmt.Errorf("store: %s: email %q is taken: %w", op, u.Email, store.ErrConflict)
	} else if !errors.Is(err, ErrNoRows) {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	return nil
}

var emailCols = []string{"user_id", "idx", "value", "value_lc", "type", "is_primary"}

func (t *txn) insertEmails(ctx context.Context, users []*directory.User) error {
	var rows [][]any
	for _, u := range users {
		for i, e := range u.Emails {
			rows = append(rows, []any{u.ID, i, e.Value, strings.ToLower(e.Value), e.Type, e.Primary})
		}
	}
	return t.bulkInsert(ctx, "user_emails", emailCols, rows, "")
}

// CreateUser inserts a user and records user.create.
func (t *txn) CreateUser(ctx context.Context, u *directory.User) error {
	op := fmt.Sprintf("create user %q", u.UserName)
	if err := normalizeUser(u); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	if u.ID == "" {
		u.ID = uuid.NewString()
	}
	if err := t.checkUserUnique(ctx, op, u); err != nil {
		return err
	}
	now := t.s.nowUTC()
	u.Version, u.CreatedAt, u.UpdatedAt, u.DeletedAt = 1, now, now, nil
	if _, err := t.c.Exec(ctx, `INSERT INTO users (`+userWriteCols+`) VALUES `+placeholders(userWriteN), t.userArgs(nil, u)...); err != nil {
		return fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
	}
	if err := t.insertEmails(ctx, []*directory.User{u}); err != nil {
		return fmt.Errorf("store: %s: emails: %w", op, t.s.mapErr(err))
	}
	return t.record(ctx, "user.create", "user", u.ID, nil, audit.Marshal(u))
}

// writeUserRow replaces the stored row of an existing user and its e-mails.
const userUpdate = `UPDATE users SET user_name = ?, user_name_lc = ?, external_id = ?, email = ?, email_lc = ?,
given_name = ?, family_name = ?, display_name = ?, display_name_lc = ?, active = ?, user_type = ?, firm_number = ?,
usual_role = ?, location = ?, attrs = ?, version = ?, created_at = ?, updated_at = ?, deleted_at = ? WHERE id = ?`

func (t *txn) writeUserRow(ctx context.Context, u *directory.User) error {
	if _, err := t.c.Exec(ctx, userUpdate, append(t.userArgs(nil, u)[1:], u.ID)...); err != nil {
		return t.s.mapErr(err)
	}
	if _, err := t.c.Exec(ctx, `DELETE FROM user_emails WHERE user_id = ?`, u.ID); err != nil {
		return err
	}
	return t.insertEmails(ctx, []*directory.User{u})
}

func (t *txn) lockUser(ctx context.Context, op, id string) (directory.User, error) {
	us, err := t.queryUsers(ctx, "WHERE u.id = ?"+t.forUpdate(), id)
	if err != nil {
		return directory.User{}, fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
	}
	if len(us) == 0 {
		return directory.User{}, fmt.Errorf("store: %s: %w", op, store.ErrNotFound)
	}
	return us[0], nil
}

// UpdateUser replaces the stored user with u (optimistic version check).
func (t *txn) UpdateUser(ctx context.Context, u *directory.User, expectVersion int64) error {
	op := fmt.Sprintf("update user %q", u.ID)
	if err := normalizeUser(u); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	cur, err := t.lockUser(ctx, op, u.ID)
	if err != nil {
		return err
	}
	return t.updateLockedUser(ctx, op, u, cur, expectVersion, false)
}

// updateLockedUser replaces cur, read locked in this transaction, with the
// normalized u: uniqueness is checked only when userName or e-mail change,
// the e-mail rows are rewritten only when they change. last says the
// caller writes nothing else when the e-mails are unchanged: the UPDATE
// then travels with the audit flush (execWithFlush, scim_auditchain.go).
func (t *txn) updateLockedUser(ctx context.Context, op string, u *directory.User, cur directory.User, expectVersion int64, last bool) error {
	if cur.DeletedAt != nil {
		return fmt.Errorf("store: %s: user is deleted: %w", op, store.ErrNotFound)
	}
	if expectVersion > 0 && expectVersion != cur.Version {
		return fmt.Errorf("store: %s: stored version %d, expected %d: %w", op, cur.Version, expectVersion, store.ErrVersionMismatch)
	}
	u.CreatedAt, u.DeletedAt = cur.CreatedAt, nil
	if sameUser(cur, *u) {
		u.Version, u.UpdatedAt = cur.Version, cur.UpdatedAt
		return nil
	}
	if !strings.EqualFold(u.UserName, cur.UserName) || !strings.EqualFold(u.Email, cur.Email) {
		if err := t.checkUserUnique(ctx, op, u); err != nil {
			return err
		}
	}
	// The version column makes a concurrent writer's change visible.
	u.Version, u.UpdatedAt = cur.Version+1, t.s.nowUTC()
	same := sameEmails(cur.Emails, u.Emails)
	exec := t.c.Exec
	if last && same {
		exec = t.execWithFlush
	}
	if _, err := exec(ctx, userUpdate, append(t.userArgs(nil, u)[1:], u.ID)...); err != nil {
		return fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
	}
	if !same {
		if _, err := t.c.Exec(ctx, `DELETE FROM user_emails WHERE user_id = ?`, u.ID); err != nil {
			return fmt.Errorf("store: %s: emails: %w", op, t.s.mapErr(err))
		}
		if err := t.insertEmails(ctx, []*directory.User{u}); err != nil {
			return fmt.Errorf("store: %s: emails: %w", op, t.s.mapErr(err))
		}
	}
	return t.record(ctx, "user.update", "user", u.ID, audit.Marshal(cur), audit.Marshal(u))
}

// DeleteUser soft-deletes a user and removes its group memberships.
func (t *txn) DeleteUser(ctx context.Context, id string) error {
	op := fmt.Sprintf("delete user %q", id)
	cur, err := t.lockUser(ctx, op, id)
	if err != nil {
		return err
	}
	if cur.DeletedAt != nil {
		return nil
	}
	u := cur
	now := t.s.nowUTC()
	u.DeletedAt, u.Active, u.Version, u.UpdatedAt = &now, false, cur.Version+1, now
	if err := t.writeUserRow(ctx, &u); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	const memberOf = `SELECT group_id FROM group_members WHERE user_id = ? ORDER BY group_id`
	groups, err := t.strings(ctx, memberOf, id)
	if err != nil {
		return fmt.Errorf("store: %s: memberships: %w", op, err)
	}
	if len(groups) > 0 && t.forUpdate() != "" {
		// The groups' rows are locked (in id order) before their member
		// rows, as a member write (AddMembers, DeleteGroup) locks them,
		// then the memberships are read again under those locks.
		in, arg := t.s.d.InList("id", groups)
		if _, err := t.strings(ctx, `SELECT id FROM groups WHERE `+in+` ORDER BY id`+t.forUpdate(), arg); err != nil {
			return fmt.Errorf("store: %s: lock groups: %w", op, err)
		}
		if groups, err = t.strings(ctx, memberOf, id); err != nil {
			return fmt.Errorf("store: %s: memberships: %w", op, err)
		}
	}
	if _, err := t.c.Exec(ctx, `DELETE FROM group_members WHERE user_id = ?`, id); err != nil {
		return fmt.Errorf("store: %s: memberships: %w", op, err)
	}
	// The members are part of the SCIM Group: its version (ETag) changes.
	for _, g := range groups {
		if err := t.touchGroup(ctx, op, g); err != nil {
			return err
		}
	}
	if err := t.record(ctx, "user.delete", "user", id, audit.Marshal(cur), audit.Marshal(u)); err != nil {
		return err
	}
	for _, g := range groups {
		if err := t.record(ctx, "group.member.remove", "group", g, audit.Marshal(memberRef{UserID: id}), nil); err != nil {
			return err
		}
	}
	return nil
}

type memberRef struct {
	UserID string `json:"userId"`
}

// UpsertUsers writes many users with batched statements; each created or
// changed user still gets its own chained audit event.
func (t *txn) UpsertUsers(ctx context.Context, users []*directory.User) (created, updated int, err error) {
	const op = "upsert users"
	if len(users) == 0 {
		return 0, 0, nil
	}
	if i, err := normalizeUsers(users); err != nil {
		return 0, 0, fmt.Errorf("store: %s: %q: %w", op, users[i].UserName, err)
	}
	var withID, names []string
	for _, u := range users {
		if u.ID != "" {
			withID = append(withID, u.ID)
		} else {
			names = append(names, strings.ToLower(u.UserName))
		}
	}
	byID := map[string]directory.User{}
	if len(withID) > 0 {
		in, arg := t.s.d.InList("u.id", withID)
		us, err := t.queryUsers(ctx, "WHERE "+in+t.forUpdate(), arg)
		if err != nil {
			return 0, 0, fmt.Errorf("store: %s: %w", op, err)
		}
		for _, u := range us {
			byID[u.ID] = u
		}
	}
	byName := map[string]directory.User{}
	if len(names) > 0 {
		in, arg := t.s.d.InList("u.user_name_lc", names)
		us, err := t.queryUsers(ctx, "WHERE u.deleted_at IS NULL AND "+in+t.forUpdate(), arg)
		if err != nil {
			return 0, 0, fmt.Errorf("store: %s: %w", op, err)
		}
		for _, u := range us {
			byName[strings.ToLower(u.UserName)] = u
		}
	}
	now := t.s.nowUTC()
	type change struct {
		u   *directory.User
		cur *directory.User
	}
	var changes []change
	seenID := map[string]bool{}
	holder := map[string]string{} // lowercased userName / "@"+email → id, final state of the batch
	for _, u := range users {
		var cur *directory.User
		if u.ID == "" {
			if c, ok := byName[strings.ToLower(u.UserName)]; ok {
				u.ID, cur = c.ID, &c
			} else {
				u.ID = uuid.NewString()
			}
		} else if c, ok := byID[u.ID]; ok {
			cur = &c
		}
		if seenID[u.ID] {
			return 0, 0, fmt.Errorf("store: %s: user %q appears twice: %w", op, u.UserName, store.ErrConflict)
		}
		seenID[u.ID] = true
		if cur != nil {
			u.CreatedAt, u.DeletedAt = cur.CreatedAt, cur.DeletedAt
			if sameUser(*cur, *u) {
				u.Version, u.UpdatedAt = cur.Version, cur.UpdatedAt
			} else {
				u.Version, u.UpdatedAt = cur.Version+1, now
				changes = append(changes, change{u, cur})
			}
		} else {
			u.Version, u.CreatedAt, u.UpdatedAt, u.DeletedAt = 1, now, now, nil
			changes = append(changes, change{u: u})
		}
		if u.DeletedAt == nil {
			for _, k := range []string{strings.ToLower(u.UserName), "@" + strings.ToLower(u.Email)} {
				if k == "@" {
					continue
				}
				if other, ok := holder[k]; ok && other != u.ID {
					return 0, 0, fmt.Errorf("store: %s: %q: userName or email used twice in the batch: %w", op, u.UserName, store.ErrConflict)
				}
				holder[k] = u.ID
			}
		}
	}
	if len(changes) == 0 {
		return 0, 0, nil
	}
	// Uniqueness against users outside the batch.
	var lcNames, lcEmails []string
	for _, c := range changes {
		if c.u.DeletedAt == nil {
			lcNames = append(lcNames, strings.ToLower(c.u.UserName))
			if c.u.Email != "" {
				lcEmails = append(lcEmails, strings.ToLower(c.u.Email))
			}
		}
	}
	inN, argN := t.s.d.InList("user_name_lc", lcNames)
	inE, argE := t.s.d.InList("email_lc", lcEmails)
	rows, err := t.c.Query(ctx, `SELECT id, user_name_lc, email_lc FROM users WHERE deleted_at IS NULL AND email_lc <> '' AND `+inE+`
UNION ALL SELECT id, user_name_lc, email_lc FROM users WHERE deleted_at IS NULL AND `+inN, argE, argN)
	if err != nil {
		return 0, 0, fmt.Errorf("store: %s: check uniqueness: %w", op, err)
	}
	for rows.Next() {
		var id, n, e string
		if err := rows.Scan(&id, &n, &e); err != nil {
			rows.Close()
			return 0, 0, fmt.Errorf("store: %s: check uniqueness: %w", op, err)
		}
		if seenID[id] {
			continue // its final state is in the batch
		}
		if h, ok := holder[n]; ok {
			rows.Close()
			return 0, 0, fmt.Errorf("store: %s: userName of user %q is taken: %w", op, h, store.ErrConflict)
		}
		if h, ok := holder["@"+e]; ok && e != "" {
			rows.Close()
			return 0, 0, fmt.Errorf("store: %s: email of user %q is taken: %w", op, h, store.ErrConflict)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("store: %s: check uniqueness: %w", op, err)
	}
	// The audit documents are encoded on another goroutine while the rows
	// are written (both only read the users): on 2 cores that takes JSON
	// encoding off a bulk load's write path. Every return waits for it, so
	// the caller never gets the users back while they are being read.
	docs := make([][2]json.RawMessage, len(changes))
	encoded := make(chan struct{})
	encode := func() {
		defer close(encoded)
		for i, c := range changes {
			if c.cur != nil {
				docs[i][0] = audit.Marshal(c.cur)
			}
			docs[i][1] = audit.Marshal(c.u)
		}
	}
	if len(changes) >= parallelMin {
		go encode()
	} else {
		encode()
	}
	defer func() { <-encoded }()
	// Batched writes: new users by COPY/INSERT, changed ones by upsert.
	var updatedIDs []string
	var written []*directory.User
	var creates, updates [][]any
	for _, c := range changes {
		row := t.userArgs(make([]any, 0, userWriteN), c.u)
		if c.cur == nil {
			creates = append(creates, row)
		} else {
			updates = append(updates, row)
		}
	}
	if err := t.bulkInsert(ctx, "users", userColList, creates, ""); err != nil {
		return 0, 0, fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
	}
	if err := t.bulkInsert(ctx, "users", userColList, updates, userUpsertSuffix); err != nil {
		return 0, 0, fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
	}
	for _, c := range changes {
		written = append(written, c.u)
		if c.cur != nil {
			updatedIDs = append(updatedIDs, c.u.ID)
		}
	}
	if len(updatedIDs) > 0 {
		in, arg := t.s.d.InList("user_id", updatedIDs)
		if _, err := t.c.Exec(ctx, `DELETE FROM user_emails WHERE `+in, arg); err != nil {
			return 0, 0, fmt.Errorf("store: %s: emails: %w", op, err)
		}
	}
	if err := t.insertEmails(ctx, written); err != nil {
		return 0, 0, fmt.Errorf("store: %s: emails: %w", op, t.s.mapErr(err))
	}
	<-encoded
	for i, c := range changes {
		if c.cur == nil {
			created++
			err = t.record(ctx, "user.create", "user", c.u.ID, nil, docs[i][1])
		} else {
			updated++
			err = t.record(ctx, "user.update", "user", c.u.ID, docs[i][0], docs[i][1])
		}
		if err != nil {
			return 0, 0, err
		}
	}
	return created, updated, nil
}

// PutLink creates or updates a source link (clearing GoneAt). A change of
// LastSeenAt alone is bookkeeping and records no event.
func (t *txn) PutLink(ctx context.Context, l directory.SourceLink) error {
	op := fmt.Sprintf("put link %s/%q", l.Source, l.Key)
	if l.Source == "" || l.Key == "" || l.UserID == "" {
		return fmt.Errorf("store: %s: source, key and user id are required", op)
	}
	if l.LastSeenAt.IsZero() {
		l.LastSeenAt = t.s.nowUTC()
	}
	l.LastSeenAt = l.LastSeenAt.UTC().Truncate(time.Microsecond)
	l.GoneAt = nil
	cur, err := t.queryLinks(ctx, "WHERE source = ? AND link_key = ?"+t.forUpdate(), l.Source, l.Key)
	if err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	d := t.s.d
	if len(cur) == 0 {
		if _, err := t.c.Exec(ctx, `INSERT INTO source_links (source, link_key, user_id, dn, gone_at, last_seen_at) VALUES (?, ?, ?, ?, NULL, ?)`,
			l.Source, l.Key, l.UserID, l.DN, d.Time(l.LastSeenAt)); err != nil {
			return fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
		}
		return t.record(ctx, "link.put", "user", l.UserID, nil, audit.Marshal(l))
	}
	c := cur[0]
	if _, err := t.c.Exec(ctx, `UPDATE source_links SET user_id = ?, dn = ?, gone_at = NULL, last_seen_at = ? WHERE source = ? AND link_key = ?`,
		l.UserID, l.DN, d.Time(l.LastSeenAt), l.Source, l.Key); err != nil {
		return fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
	}
	if c.UserID == l.UserID && c.DN == l.DN && c.GoneAt == nil {
		return nil
	}
	return t.record(ctx, "link.put", "user", l.UserID, audit.Marshal(c), audit.Marshal(l))
}

// MarkLinkGone records that the source no longer has the record.
func (t *txn) MarkLinkGone(ctx context.Context, source, key string) error {
	op := fmt.Sprintf("mark link %s/%q gone", source, key)
	cur, err := t.queryLinks(ctx, "WHERE source = ? AND link_key = ?"+t.forUpdate(), source, key)
	if err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	if len(cur) == 0 {
		return fmt.Errorf("store: %s: %w", op, store.ErrNotFound)
	}
	if cur[0].GoneAt != nil {
		return nil
	}
	l := cur[0]
	now := t.s.nowUTC()
	l.GoneAt = &now
	if _, err := t.c.Exec(ctx, `UPDATE source_links SET gone_at = ? WHERE source = ? AND link_key = ?`, t.s.d.Time(now), source, key); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	if err := t.dropFingerprint(ctx, op, source, key); err != nil {
		return err
	}
	return t.record(ctx, "link.gone", "user", l.UserID, audit.Marshal(cur[0]), audit.Marshal(l))
}

// DeleteLink removes a link.
func (t *txn) DeleteLink(ctx context.Context, source, key string) error {
	op := fmt.Sprintf("delete link %s/%q", source, key)
	cur, err := t.queryLinks(ctx, "WHERE source = ? AND link_key = ?"+t.forUpdate(), source, key)
	if err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	if len(cur) == 0 {
		return fmt.Errorf("store: %s: %w", op, store.ErrNotFound)
	}
	if _, err := t.c.Exec(ctx, `DELETE FROM source_links WHERE source = ? AND link_key = ?`, source, key); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	if err := t.dropFingerprint(ctx, op, source, key); err != nil {
		return err
	}
	return t.record(ctx, "link.delete", "user", cur[0].UserID, audit.Marshal(cur[0]), nil)
}

// dropFingerprint removes the sync fingerprint of a link that is gone or
// deleted, in the same transaction: a link that comes back is compared
// with its user again, and fingerprints of links long gone do not pile up
// (nor are read by every full sync).
func (t *txn) dropFingerprint(ctx context.Context, op, source, key string) error {
	if _, err := t.c.Exec(ctx, `DELETE FROM sync_fingerprints WHERE source = ? AND link_key = ?`, source, key); err != nil {
		return fmt.Errorf("store: %s: drop fingerprint: %w", op, err)
	}
	return nil
}
