package sqlstore

// Case-access persistence (owned by the caseaccess feature): the tables of
// migration 0050, exposed through caseaccess.Store rather than
// store.Store/store.Tx. Writes run in Store.Update's transaction and record
// their audit events with the same txn.record helper.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/caseaccess"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// CaseAccess returns the store as the caseaccess package uses it.
func (s *Store) CaseAccess() caseaccess.Store { return caseStore{caseReader{&s.reader}, s} }

type caseStore struct {
	caseReader
	s *Store
}

var (
	_ caseaccess.Store = caseStore{}
	_ caseaccess.Tx    = caseTx{}
)

func (c caseStore) UpdateCases(ctx context.Context, m audit.Meta, fn func(ctx context.Context, tx caseaccess.Tx) error) error {
	return c.s.Update(ctx, m, func(ctx context.Context, tx store.Tx) error {
		t, ok := tx.(*txn)
		if !ok {
			return fmt.Errorf("store: case access: unexpected transaction type %T", tx)
		}
		return fn(ctx, caseTx{caseReader{&t.reader}, t})
	})
}

func (c caseStore) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	return c.s.AcquireLease(ctx, name, holder, ttl)
}

func (c caseStore) ReleaseLease(ctx context.Context, name, holder string) error {
	return c.s.ReleaseLease(ctx, name, holder)
}

// caseReader implements caseaccess.Reader over a reader (pool or tx).
type caseReader struct{ r *reader }

func (c caseReader) GetUser(ctx context.Context, id string) (directory.User, error) {
	return c.r.GetUser(ctx, id)
}

func (c caseReader) GetUserByUserName(ctx context.Context, n string) (directory.User, error) {
	return c.r.GetUserByUserName(ctx, n)
}

func (c caseReader) GetUserByEmail(ctx context.Context, e string) (directory.User, error) {
	return c.r.GetUserByEmail(ctx, e)
}

func caList(l []string) any {
	if len(l) == 0 {
		return nil
	}
	b, _ := json.Marshal(l)
	return string(b)
}

func caUnlist(b []byte, dst *[]string) error {
	if len(b) == 0 {
		return nil
	}
	return json.Unmarshal(b, dst)
}

func (c caseReader) ntime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return c.r.s.d.Time(*t)
}

// GetCase returns a case by reference.
func (c caseReader) GetCase(ctx context.Context, ref string) (caseaccess.Case, error) {
	var k caseaccess.Case
	var ds []byte
	err := c.r.c.QueryRow(ctx, `SELECT ref, title, defendants, created_by, created_at FROM cases WHERE ref = ?`, ref).
		Scan(&k.Ref, &k.Title, jscan{&ds}, &k.CreatedBy, tscan{&k.CreatedAt})
	if err == nil {
		err = caUnlist(ds, &k.Defendants)
	}
	if err != nil {
		return caseaccess.Case{}, fmt.Errorf("store: get case %q: %w", ref, c.r.s.mapErr(err))
	}
	return k, nil
}

const inviteSelect = `SELECT id, case_ref, user_id, role, defendants, expires_at, message, inviter_id, created_at, revoked_at, revoke_reason FROM case_invites`

func (c caseReader) queryInvites(ctx context.Context, tail string, args ...any) ([]caseaccess.Invite, error) {
	rows, err := c.r.c.Query(ctx, inviteSelect+" "+tail, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []caseaccess.Invite
	for rows.Next() {
		var i caseaccess.Invite
		var ds []byte
		if err := rows.Scan(&i.ID, &i.CaseRef, &i.UserID, &i.Role, jscan{&ds}, ntscan{&i.ExpiresAt}, &i.Message, &i.InviterID,
			tscan{&i.CreatedAt}, ntscan{&i.RevokedAt}, &i.RevokeReason); err != nil {
			return nil, err
		}
		if err := caUnlist(ds, &i.Defendants); err != nil {
			return nil, err
		}
		out = append(out, i)
	}
	return out, rows.Err()
}

func (c caseReader) oneInvite(ctx context.Context, op, tail string, args ...any) (caseaccess.Invite, error) {
	is, err := c.queryInvites(ctx, tail, args...)
	if err != nil {
		return caseaccess.Invite{}, fmt.Errorf("store: %s: %w", op, c.r.s.mapErr(err))
	}
	if len(is) == 0 {
		return caseaccess.Invite{}, fmt.Errorf("store: %s: %w", op, store.ErrNotFound)
	}
	return is[0], nil
}

// GetInvite returns an invite by id.
func (c caseReader) GetInvite(ctx context.Context, id string) (caseaccess.Invite, error) {
	return c.oneInvite(ctx, fmt.Sprintf("get invite %q", id), "WHERE id = ?"+c.r.forUpdate(), id)
}

// LiveInvite returns the (case, user) invite that is not revoked.
func (c caseReader) LiveInvite(ctx context.Context, caseRef, userID string) (caseaccess.Invite, error) {
	return c.oneInvite(ctx, fmt.Sprintf("live invite of %q on %q", userID, caseRef),
		"WHERE case_ref = ? AND user_id = ? AND revoked_at IS NULL"+c.r.forUpdate(), caseRef, userID)
}

// ListInvites selects invites by case and user.
func (c caseReader) ListInvites(ctx context.Context, q caseaccess.InviteQuery) ([]caseaccess.Invite, error) {
	var conds []string
	var args []any
	if q.CaseRef != "" {
		conds, args = append(conds, "case_ref = ?"), append(args, q.CaseRef)
	}
	if q.UserID != "" {
		conds, args = append(conds, "user_id = ?"), append(args, q.UserID)
	}
	if !q.IncludeRevoked {
		conds = append(conds, "revoked_at IS NULL")
	}
	tail := ""
	if len(conds) > 0 {
		tail = "WHERE " + strings.Join(conds, " AND ")
	}
	tail += " ORDER BY created_at, id"
	if q.Limit > 0 {
		tail += " LIMIT ?"
		args = append(args, q.Limit)
	}
	out, err := c.queryInvites(ctx, tail, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list invites: %w", err)
	}
	return out, nil
}

// ListGrantors lists the active users with a live, unexpired invite to the
// case with one of roles (at most 100), by userName.
func (c caseReader) ListGrantors(ctx context.Context, caseRef string, roles []caseaccess.Role, now time.Time) ([]caseaccess.Grantor, error) {
	rs := make([]string, len(roles))
	for i, r := range roles {
		rs[i] = string(r)
	}
	in, arg := c.r.s.d.InList("i.role", rs)
	rows, err := c.r.c.Query(ctx, `SELECT u.id, u.user_name, u.display_name, u.email, i.role
FROM case_invites i JOIN users u ON u.id = i.user_id
WHERE i.case_ref = ? AND `+in+` AND i.revoked_at IS NULL AND (i.expires_at IS NULL OR i.expires_at > ?)
  AND u.active AND u.deleted_at IS NULL
ORDER BY u.user_name, u.id LIMIT 100`, caseRef, arg, c.r.s.d.Time(now))
	if err != nil {
		return nil, fmt.Errorf("store: list grantors of %q: %w", caseRef, err)
	}
	defer rows.Close()
	var out []caseaccess.Grantor
	for rows.Next() {
		var g caseaccess.Grantor
		if err := rows.Scan(&g.UserID, &g.UserName, &g.DisplayName, &g.Email, &g.Role); err != nil {
			return nil, fmt.Errorf("store: list grantors of %q: %w", caseRef, err)
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list grantors of %q: %w", caseRef, err)
	}
	return out, nil
}

// ListGroupGrants lists a case's group grants, oldest first.
func (c caseReader) ListGroupGrants(ctx context.Context, caseRef string) ([]caseaccess.GroupGrant, error) {
	rows, err := c.r.c.Query(ctx, `SELECT id, case_ref, usual_role, location, created_by, created_at FROM case_group_grants
WHERE case_ref = ? ORDER BY created_at, id`, caseRef)
	if err != nil {
		return nil, fmt.Errorf("store: list group grants of %q: %w", caseRef, err)
	}
	defer rows.Close()
	out := []caseaccess.GroupGrant{}
	for rows.Next() {
		var g caseaccess.GroupGrant
		if err := rows.Scan(&g.ID, &g.CaseRef, &g.UsualRole, &g.Location, &g.CreatedBy, tscan{&g.CreatedAt}); err != nil {
			return nil, fmt.Errorf("store: list group grants of %q: %w", caseRef, err)
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list group grants of %q: %w", caseRef, err)
	}
	return out, nil
}

// ListDomainGrants lists a case's domain grants, oldest first.
func (c caseReader) ListDomainGrants(ctx context.Context, caseRef string) ([]caseaccess.DomainGrant, error) {
	rows, err := c.r.c.Query(ctx, `SELECT id, case_ref, domain, defendants, location, created_by, created_at FROM case_domain_grants
WHERE case_ref = ? ORDER BY created_at, id`, caseRef)
	if err != nil {
		return nil, fmt.Errorf("store: list domain grants of %q: %w", caseRef, err)
	}
	defer rows.Close()
	out := []caseaccess.DomainGrant{}
	for rows.Next() {
		var g caseaccess.DomainGrant
		var ds []byte
		if err := rows.Scan(&g.ID, &g.CaseRef, &g.Domain, jscan{&ds}, &g.Location, &g.CreatedBy, tscan{&g.CreatedAt}); err != nil {
			return nil, fmt.Errorf("store: list domain grants of %q: %w", caseRef, err)
		}
		if err := caUnlist(ds, &g.Defendants); err != nil {
			return nil, fmt.Errorf("store: list domain grants of %q: %w", caseRef, err)
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list domain grants of %q: %w", caseRef, err)
	}
	return out, nil
}

const accessSelect = `SELECT case_ref, user_id, first_at, via_kind, via_id, via_detail, defendants, all_defendants, retained_at, grants FROM case_access`

func scanAccess(row Row, a *caseaccess.Access) error {
	var ds, gs []byte
	err := row.Scan(&a.CaseRef, &a.UserID, tscan{&a.FirstAt}, &a.ViaKind, &a.ViaID, &a.ViaDetail, jscan{&ds}, &a.AllDefendants, ntscan{&a.RetainedAt}, jscan{&gs})
	if err == nil {
		err = caUnlist(ds, &a.Defendants)
	}
	if err == nil {
		err = caUnGrants(gs, &a.Grants)
	}
	return err
}

func caGrants(gs []caseaccess.UsedGrant) any {
	if len(gs) == 0 {
		return nil
	}
	b, _ := json.Marshal(gs)
	return string(b)
}

func caUnGrants(b []byte, dst *[]caseaccess.UsedGrant) error {
	if len(b) == 0 {
		return nil
	}
	return json.Unmarshal(b, dst)
}

// GetAccess returns the access record of a user on a case.
func (c caseReader) GetAccess(ctx context.Context, caseRef, userID string) (caseaccess.Access, error) {
	var a caseaccess.Access
	err := scanAccess(c.r.c.QueryRow(ctx, accessSelect+` WHERE case_ref = ? AND user_id = ?`+c.r.forUpdate(), caseRef, userID), &a)
	if err != nil {
		return caseaccess.Access{}, fmt.Errorf("store: get access of %q on %q: %w", userID, caseRef, c.r.s.mapErr(err))
	}
	return a, nil
}

// AccessFacts reads the user, the case, the user's live invite and access
// record, and the case's grant counts in one query (the decision's hot
// path).
func (c caseReader) AccessFacts(ctx context.Context, caseRef, userID string) (caseaccess.Facts, error) {
	var f caseaccess.Facts
	u := &f.User
	var cRef, cTitle, cBy *string
	var cCreated *time.Time
	var cds, ids, ads, ags []byte
	var iID, iRole, iMsg, iInviter, aKind, aID, aDetail *string
	var iExp, iCreated, aFirst, aRetained *time.Time
	var aAll *bool
	var nGroups, nDomains int64
	err := c.r.c.QueryRow(ctx, c.accessFactsQuery(), caseRef, userID).Scan(userDest(u,
		&cRef, &cTitle, jscan{&cds}, &cBy, ntscan{&cCreated},
		&iID, &iRole, jscan{&ids}, ntscan{&iExp}, &iMsg, &iInviter, ntscan{&iCreated},
		ntscan{&aFirst}, &aKind, &aID, &aDetail, jscan{&ads}, &aAll, ntscan{&aRetained}, jscan{&ags},
		&nGroups, &nDomains)...)
	if err != nil {
		return caseaccess.Facts{}, fmt.Errorf("store: access facts of %q on %q: %w", userID, caseRef, c.r.s.mapErr(err))
	}
	if cRef == nil {
		return f, nil
	}
	f.CaseFound = true
	f.Case = caseaccess.Case{Ref: *cRef, Title: caDeref(cTitle), CreatedBy: caDeref(cBy)}
	if cCreated != nil {
		f.Case.CreatedAt = *cCreated
	}
	f.GroupGrants, f.DomainGrants = int(nGroups), int(nDomains)
	if err := caUnlist(cds, &f.Case.Defendants); err != nil {
		return caseaccess.Facts{}, fmt.Errorf("store: access facts: %w", err)
	}
	if iID != nil {
		inv := &caseaccess.Invite{ID: *iID, CaseRef: f.Case.Ref, UserID: userID, Role: caseaccess.Role(caDeref(iRole)), ExpiresAt: iExp,
			Message: caDeref(iMsg), InviterID: caDeref(iInviter)}
		if iCreated != nil {
			inv.CreatedAt = *iCreated
		}
		if err := caUnlist(ids, &inv.Defendants); err != nil {
			return caseaccess.Facts{}, fmt.Errorf("store: access facts: %w", err)
		}
		f.Invite = inv
	}
	if aKind != nil && aFirst != nil {
		acc := &caseaccess.Access{CaseRef: f.Case.Ref, UserID: userID, FirstAt: *aFirst, ViaKind: caseaccess.ViaKind(*aKind),
			ViaID: caDeref(aID), ViaDetail: caDeref(aDetail), AllDefendants: aAll != nil && *aAll, RetainedAt: aRetained}
		if err := caUnlist(ads, &acc.Defendants); err != nil {
			return caseaccess.Facts{}, fmt.Errorf("store: access facts: %w", err)
		}
		if err := caUnGrants(ags, &acc.Grants); err != nil {
			return caseaccess.Facts{}, fmt.Errorf("store: access facts: %w", err)
		}
		f.Access = acc
	}
	return f, nil
}

const accessFactsCols = `SELECT u.id, u.user_name, u.external_id, u.email, u.given_name, u.family_name, u.display_name,
	u.active, u.user_type, u.firm_number, u.usual_role, u.location, u.attrs, u.version, u.created_at, u.updated_at, u.deleted_at,
	c.ref, c.title, c.defendants, c.created_by, c.created_at,
	i.id, i.role, i.defendants, i.expires_at, i.message, i.inviter_id, i.created_at,
	a.first_at, a.via_kind, a.via_id, a.via_detail, a.defendants, a.all_defendants, a.retained_at, a.grants,
	(SELECT COUNT(*) FROM case_group_grants g WHERE g.case_ref = c.ref),
	(SELECT COUNT(*) FROM case_domain_grants d WHERE d.case_ref = c.ref)
`

const accessFactsJoins = `LEFT JOIN case_invites i ON i.case_ref = c.ref AND i.user_id = u.id AND i.revoked_at IS NULL
LEFT JOIN case_access a ON a.case_ref = c.ref AND a.user_id = u.id`

// accessFactsQuery takes (case ref, user id). On SQLite the two keys come
// from a materialized one-row CTE: bound directly, ANALYZE's STAT4 samples
// make the planner's choice depend on their values, so SQLite re-plans the
// statement on every new binding (in a scratch run over 100,000 invites a
// reused prepared statement of the plain form cost as much as a fresh one;
// the CTE form cost about 0.6x fresh and 0.3x reused). PostgreSQL plans
// the plain form well.
func (c caseReader) accessFactsQuery() string {
	if c.r.s.d.Name == "sqlite" {
		return `WITH k(ref, uid) AS MATERIALIZED (SELECT ?, ?)
` + accessFactsCols + `FROM k JOIN users u ON u.id = k.uid
LEFT JOIN cases c ON c.ref = k.ref
` + accessFactsJoins
	}
	return accessFactsCols + `FROM users u
LEFT JOIN cases c ON c.ref = ?
` + accessFactsJoins + `
WHERE u.id = ?`
}

func caDeref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// ListAccess lists a case's access records by first access.
func (c caseReader) ListAccess(ctx context.Context, caseRef string) ([]caseaccess.Access, error) {
	rows, err := c.r.c.Query(ctx, accessSelect+` WHERE case_ref = ? ORDER BY first_at, user_id`+c.r.forUpdate(), caseRef)
	if err != nil {
		return nil, fmt.Errorf("store: list access of %q: %w", caseRef, err)
	}
	defer rows.Close()
	out := []caseaccess.Access{}
	for rows.Next() {
		var a caseaccess.Access
		if err := scanAccess(rows, &a); err != nil {
			return nil, fmt.Errorf("store: list access of %q: %w", caseRef, err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list access of %q: %w", caseRef, err)
	}
	return out, nil
}

// NextExpiry is the earliest expiry among invites not revoked.
func (c caseReader) NextExpiry(ctx context.Context) (time.Time, bool, error) {
	var t *time.Time
	err := c.r.c.QueryRow(ctx, `SELECT MIN(expires_at) FROM case_invites WHERE revoked_at IS NULL AND expires_at IS NOT NULL`).Scan(ntscan{&t})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("store: next invite expiry: %w", err)
	}
	if t == nil {
		return time.Time{}, false, nil
	}
	return *t, true, nil
}

// FirmsForEmailDomains returns the firms (primary or membership) of users
// not deleted with an e-mail at any of domains.
func (c caseReader) FirmsForEmailDomains(ctx context.Context, domains []string) ([]directory.Firm, error) {
	if len(domains) == 0 {
		return nil, nil
	}
	var likes []string
	var args []any
	for _, d := range domains {
		likes = append(likes, `e.value_lc LIKE ? ESCAPE '\'`)
		args = append(args, "%@"+escapeLike(strings.ToLower(d)))
	}
	q := `WITH du AS (
	SELECT DISTINCT u.id, u.firm_number FROM users u JOIN user_emails e ON e.user_id = u.id
	WHERE u.deleted_at IS NULL AND (` + strings.Join(likes, " OR ") + `)
), fn AS (
	SELECT firm_number AS n FROM du WHERE firm_number <> ''
	UNION SELECT m.firm_number FROM firm_memberships m JOIN du ON du.id = m.user_id
)
SELECT f.number, f.name, f.type FROM firms f JOIN fn ON fn.n = f.number ORDER BY f.number`
	rows, err := c.r.c.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: firms of e-mail domains: %w", err)
	}
	defer rows.Close()
	var out []directory.Firm
	for rows.Next() {
		var f directory.Firm
		if err := rows.Scan(&f.Number, &f.Name, &f.Type); err != nil {
			return nil, fmt.Errorf("store: firms of e-mail domains: %w", err)
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: firms of e-mail domains: %w", err)
	}
	return out, nil
}

// ListNotifications pages the outbox by id.
func (c caseReader) ListNotifications(ctx context.Context, afterID int64, limit int) ([]caseaccess.Notification, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := c.r.c.Query(ctx, `SELECT id, kind, case_ref, invite_id, recipient_id, payload, created_at, sent_at
FROM case_notifications WHERE id > ? ORDER BY id LIMIT ?`, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("store: list notifications: %w", err)
	}
	defer rows.Close()
	var out []caseaccess.Notification
	for rows.Next() {
		var n caseaccess.Notification
		if err := rows.Scan(&n.ID, &n.Kind, &n.CaseRef, &n.InviteID, &n.RecipientID, jscan{(*[]byte)(&n.Payload)},
			tscan{&n.CreatedAt}, ntscan{&n.SentAt}); err != nil {
			return nil, fmt.Errorf("store: list notifications: %w", err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list notifications: %w", err)
	}
	return out, nil
}

// caseTx implements caseaccess.Tx.
type caseTx struct {
	caseReader
	t *txn
}

func (c caseTx) exec(ctx context.Context, op, q string, args ...any) (int64, error) {
	n, err := c.t.c.Exec(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("store: %s: %w", op, c.t.s.mapErr(err))
	}
	return n, nil
}

// CreateCase inserts a case.
func (c caseTx) CreateCase(ctx context.Context, k *caseaccess.Case) error {
	op := fmt.Sprintf("create case %q", k.Ref)
	if k.Ref == "" {
		return fmt.Errorf("store: %s: empty reference", op)
	}
	if _, err := c.exec(ctx, op, `INSERT INTO cases (ref, title, defendants, created_by, created_at) VALUES (?, ?, ?, ?, ?)`,
		k.Ref, k.Title, caList(k.Defendants), k.CreatedBy, c.t.s.d.Time(k.CreatedAt)); err != nil {
		return err
	}
	return c.t.record(ctx, "case.create", "case", k.Ref, nil, audit.Marshal(k))
}

// CreateInvite inserts an invite; ErrConflict when the user has a live one.
func (c caseTx) CreateInvite(ctx context.Context, i *caseaccess.Invite) error {
	op := fmt.Sprintf("create invite of %q on %q", i.UserID, i.CaseRef)
	if i.ID == "" || i.CaseRef == "" || i.UserID == "" || i.Role == "" {
		return fmt.Errorf("store: %s: id, case, user and role are required", op)
	}
	if _, err := c.exec(ctx, op, `INSERT INTO case_invites (id, case_ref, user_id, role, defendants, expires_at, message, inviter_id, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, i.ID, i.CaseRef, i.UserID, string(i.Role), caList(i.Defendants), c.ntime(i.ExpiresAt),
		i.Message, i.InviterID, c.t.s.d.Time(i.CreatedAt)); err != nil {
		return err
	}
	return c.t.record(ctx, "case.invite.create", "case_invite", i.UserID, nil, audit.Marshal(i))
}

// SetInviteExpiry changes an invite's expiry.
func (c caseTx) SetInviteExpiry(ctx context.Context, id string, exp *time.Time) (caseaccess.Invite, error) {
	cur, err := c.GetInvite(ctx, id)
	if err != nil {
		return caseaccess.Invite{}, err
	}
	next := cur
	next.ExpiresAt = exp
	if (cur.ExpiresAt == nil && exp == nil) || (cur.ExpiresAt != nil && exp != nil && cur.ExpiresAt.Equal(*exp)) {
		return cur, nil
	}
	if _, err := c.exec(ctx, fmt.Sprintf("set expiry of invite %q", id), `UPDATE case_invites SET expires_at = ? WHERE id = ?`,
		c.ntime(exp), id); err != nil {
		return caseaccess.Invite{}, err
	}
	return next, c.t.record(ctx, "case.invite.expiry", "case_invite", cur.UserID, audit.Marshal(cur), audit.Marshal(next))
}

// RevokeInvite ends a live invite with a reason (revoked or expired).
func (c caseTx) RevokeInvite(ctx context.Context, id string, at time.Time, reason string) (caseaccess.Invite, error) {
	cur, err := c.GetInvite(ctx, id)
	if err != nil {
		return caseaccess.Invite{}, err
	}
	if cur.RevokedAt != nil {
		return cur, nil
	}
	next := cur
	next.RevokedAt, next.RevokeReason = &at, reason
	if _, err := c.exec(ctx, fmt.Sprintf("revoke invite %q", id), `UPDATE case_invites SET revoked_at = ?, revoke_reason = ? WHERE id = ? AND revoked_at IS NULL`,
		c.t.s.d.Time(at), reason, id); err != nil {
		return caseaccess.Invite{}, err
	}
	action := "case.invite.revoke"
	if reason == caseaccess.ReasonExpired {
		action = "case.invite.expire"
	}
	return next, c.t.record(ctx, action, "case_invite", cur.UserID, audit.Marshal(cur), audit.Marshal(next))
}

// ExpireDue revokes (reason expired) up to limit due invites, earliest
// first, one audit event each.
func (c caseTx) ExpireDue(ctx context.Context, now time.Time, limit int) ([]caseaccess.Invite, error) {
	if limit <= 0 {
		limit = 1000
	}
	due, err := c.queryInvites(ctx, `WHERE revoked_at IS NULL AND expires_at IS NOT NULL AND expires_at <= ?
ORDER BY expires_at, id LIMIT ?`+c.t.forUpdate(), c.t.s.d.Time(now), limit)
	if err != nil {
		return nil, fmt.Errorf("store: expire due invites: %w", c.t.s.mapErr(err))
	}
	if len(due) == 0 {
		return nil, nil
	}
	// An explicit id list (not InList's json_each) lets SQLite probe the
	// primary key instead of scanning the table.
	per := c.t.s.d.MaxRowsPerInsert
	for start := 0; start < len(due); start += per {
		end := min(start+per, len(due))
		args := []any{c.t.s.d.Time(now), caseaccess.ReasonExpired}
		for _, inv := range due[start:end] {
			args = append(args, inv.ID)
		}
		if _, err := c.exec(ctx, "expire due invites", `UPDATE case_invites SET revoked_at = ?, revoke_reason = ? WHERE revoked_at IS NULL AND id IN `+
			placeholders(end-start), args...); err != nil {
			return nil, err
		}
	}
	out := make([]caseaccess.Invite, len(due))
	for i, cur := range due {
		next := cur
		at := now
		next.RevokedAt, next.RevokeReason = &at, caseaccess.ReasonExpired
		out[i] = next
		if err := c.t.record(ctx, "case.invite.expire", "case_invite", cur.UserID, audit.Marshal(cur), audit.Marshal(next)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func caseKey(parts ...string) string {
	for i := range parts {
		parts[i] = strings.ToLower(strings.TrimSpace(parts[i]))
	}
	return strings.Join(parts, "\x1f")
}

// AddGroupGrant inserts a group grant; ErrConflict on the same role and location.
func (c caseTx) AddGroupGrant(ctx context.Context, g *caseaccess.GroupGrant) error {
	if _, err := c.exec(ctx, fmt.Sprintf("add group grant on %q", g.CaseRef), `INSERT INTO case_group_grants
(id, case_ref, usual_role, location, match_key, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		g.ID, g.CaseRef, g.UsualRole, g.Location, caseKey(g.UsualRole, g.Location), g.CreatedBy, c.t.s.d.Time(g.CreatedAt)); err != nil {
		return err
	}
	return c.t.record(ctx, "case.group.add", "case_group_grant", g.CaseRef, nil, audit.Marshal(g))
}

// AddDomainGrant inserts a domain grant; ErrConflict on the same domain and location.
func (c caseTx) AddDomainGrant(ctx context.Context, g *caseaccess.DomainGrant) error {
	if _, err := c.exec(ctx, fmt.Sprintf("add domain grant on %q", g.CaseRef), `INSERT INTO case_domain_grants
(id, case_ref, domain, defendants, location, match_key, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		g.ID, g.CaseRef, g.Domain, caList(g.Defendants), g.Location, caseKey(g.Domain, g.Location), g.CreatedBy, c.t.s.d.Time(g.CreatedAt)); err != nil {
		return err
	}
	return c.t.record(ctx, "case.domain.add", "case_domain_grant", g.CaseRef, nil, audit.Marshal(g))
}

// RemoveGroupGrant deletes a group grant of a case.
func (c caseTx) RemoveGroupGrant(ctx context.Context, caseRef, id string) (caseaccess.GroupGrant, error) {
	gs, err := c.ListGroupGrants(ctx, caseRef)
	if err != nil {
		return caseaccess.GroupGrant{}, err
	}
	for _, g := range gs {
		if g.ID != id {
			continue
		}
		if _, err := c.exec(ctx, fmt.Sprintf("remove group grant %q", id), `DELETE FROM case_group_grants WHERE id = ?`, id); err != nil {
			return caseaccess.GroupGrant{}, err
		}
		return g, c.t.record(ctx, "case.group.remove", "case_group_grant", caseRef, audit.Marshal(g), nil)
	}
	return caseaccess.GroupGrant{}, fmt.Errorf("store: remove group grant %q: %w", id, store.ErrNotFound)
}

// RemoveDomainGrant deletes a domain grant of a case.
func (c caseTx) RemoveDomainGrant(ctx context.Context, caseRef, id string) (caseaccess.DomainGrant, error) {
	gs, err := c.ListDomainGrants(ctx, caseRef)
	if err != nil {
		return caseaccess.DomainGrant{}, err
	}
	for _, g := range gs {
		if g.ID != id {
			continue
		}
		if _, err := c.exec(ctx, fmt.Sprintf("remove domain grant %q", id), `DELETE FROM case_domain_grants WHERE id = ?`, id); err != nil {
			return caseaccess.DomainGrant{}, err
		}
		return g, c.t.record(ctx, "case.domain.remove", "case_domain_grant", caseRef, audit.Marshal(g), nil)
	}
	return caseaccess.DomainGrant{}, fmt.Errorf("store: remove domain grant %q: %w", id, store.ErrNotFound)
}

// InsertAccess records a first access in one statement; false (nothing
// written) when the user already has a record.
// On PostgreSQL the statement also locks the audit chain head
// (execLockingHead), so a first access is 3 round trips: the decision's
// facts read, [BEGIN + this], [audit event + COMMIT].
func (c caseTx) InsertAccess(ctx context.Context, a *caseaccess.Access) (bool, error) {
	n, err := c.t.execLockingHead(ctx, `INSERT INTO case_access
(case_ref, user_id, first_at, via_kind, via_id, via_detail, defendants, all_defendants, retained_at, grants)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (case_ref, user_id) DO NOTHING`,
		a.CaseRef, a.UserID, c.t.s.d.Time(a.FirstAt), string(a.ViaKind), a.ViaID, a.ViaDetail, caList(a.Defendants), a.AllDefendants,
		c.ntime(a.RetainedAt), caGrants(a.Grants))
	if err != nil {
		return false, fmt.Errorf("store: record first access of %q on %q: %w", a.UserID, a.CaseRef, c.t.s.mapErr(err))
	}
	if n == 0 {
		return false, nil
	}
	return true, c.t.record(ctx, "case.access.first", "case_access", a.UserID, nil, audit.Marshal(a))
}

// UpdateAccess overwrites an access record, audited as action.
func (c caseTx) UpdateAccess(ctx context.Context, action string, before, after *caseaccess.Access) error {
	op := fmt.Sprintf("update access of %q on %q", after.UserID, after.CaseRef)
	n, err := c.exec(ctx, op, `UPDATE case_access SET first_at = ?, via_kind = ?, via_id = ?, via_detail = ?, defendants = ?,
all_defendants = ?, retained_at = ?, grants = ? WHERE case_ref = ? AND user_id = ?`,
		c.t.s.d.Time(after.FirstAt), string(after.ViaKind), after.ViaID, after.ViaDetail, caList(after.Defendants), after.AllDefendants,
		c.ntime(after.RetainedAt), caGrants(after.Grants), after.CaseRef, after.UserID)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("store: %s: %w", op, store.ErrNotFound)
	}
	return c.t.record(ctx, action, "case_access", after.UserID, audit.Marshal(before), audit.Marshal(after))
}

// AddNotifications appends outbox events (the outbox is itself the record
// of what is to be sent; the change that caused them is audited).
func (c caseTx) AddNotifications(ctx context.Context, ns []caseaccess.Notification) error {
	per := c.t.s.d.MaxRowsPerInsert
	for start := 0; start < len(ns); start += per {
		end := min(start+per, len(ns))
		var b strings.Builder
		b.WriteString(`INSERT INTO case_notifications (kind, case_ref, invite_id, recipient_id, payload, created_at) VALUES `)
		args := make([]any, 0, (end-start)*6)
		for i, n := range ns[start:end] {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(placeholders(6))
			args = append(args, n.Kind, n.CaseRef, n.InviteID, n.RecipientID, jarg(n.Payload), c.t.s.d.Time(n.CreatedAt))
		}
		if _, err := c.exec(ctx, "add notifications", b.String(), args...); err != nil {
			return err
		}
	}
	return nil
}
