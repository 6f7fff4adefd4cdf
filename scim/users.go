package scim

import (
	"context"
	"errors"
	"fmt"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// reader is what rendering needs; Backend and store.Tx both provide it, so
// a write renders its response from inside its own transaction.
type reader interface {
	ListGrants(ctx context.Context, q store.GrantQuery) ([]directory.Grant, error)
	ListUserGroups(ctx context.Context, userID string) ([]directory.Group, error)
	ListGroupMembers(ctx context.Context, groupID, after string, limit int) ([]string, error)
}

type userOps struct{ h *Handler }

var fullProjection = projection{}

// extrasReader is what store/sqlstore offers beyond reader
// (store/sqlstore/scim_users.go): the grants and groups of a whole page of
// users in one statement. Without it, render asks per user.
type extrasReader interface {
	SCIMUserExtras(ctx context.Context, userIDs []string) (map[string][]directory.Grant, map[string][]directory.Group, error)
}

// pageExtrasLister is pageLister and extrasReader in one statement: the
// page with each user's grants and groups (store/sqlstore/scim_users.go).
type pageExtrasLister interface {
	SCIMListUsersExtras(ctx context.Context, q store.UserQuery) (store.Page[directory.User], map[string][]directory.Grant, map[string][]directory.Group, error)
}

// pageLister is ListUsers that skips the count when the page tells the
// total (store/sqlstore/scim_users.go).
type pageLister interface {
	SCIMListUsers(ctx context.Context, q store.UserQuery) (store.Page[directory.User], error)
}

func (o userOps) render(ctx context.Context, rd reader, u directory.User, p projection) (map[string]any, error) {
	out, err := o.renderAll(ctx, rd, []directory.User{u}, p)
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// renderAll renders users with their effective roles, offices and groups
// when the projection returns them.
func (o userOps) renderAll(ctx context.Context, rd reader, users []directory.User, p projection) ([]map[string]any, error) {
	return o.renderWith(ctx, rd, users, p, nil, nil)
}

// renderWith is renderAll with the grants and groups already read when
// grants is not nil.
func (o userOps) renderWith(ctx context.Context, rd reader, users []directory.User, p projection,
	grants map[string][]directory.Grant, groups map[string][]directory.Group) ([]map[string]any, error) {
	withGrants := p.wants(URNDirsyncd, "roles") || p.wants(URNDirsyncd, "offices")
	withGroups := p.wants("", "groups")
	er, fast := rd.(extrasReader)
	switch {
	case grants != nil: // read with the page
	case fast && (withGrants || withGroups) && len(users) > 0:
		ids := make([]string, len(users))
		for i, u := range users {
			ids[i] = u.ID
		}
		var err error
		if grants, groups, err = er.SCIMUserExtras(ctx, ids); err != nil {
			return nil, fmt.Errorf("scim: roles and groups of %d users: %w", len(ids), err)
		}
	default:
		grants, groups = map[string][]directory.Grant{}, map[string][]directory.Group{}
		for _, u := range users {
			if withGrants {
				gs, err := rd.ListGrants(ctx, store.GrantQuery{UserID: u.ID})
				if err != nil {
					return nil, fmt.Errorf("scim: grants of user %s: %w", u.ID, err)
				}
				grants[u.ID] = gs
			}
			if withGroups {
				gs, err := rd.ListUserGroups(ctx, u.ID)
				if err != nil {
					return nil, fmt.Errorf("scim: groups of user %s: %w", u.ID, err)
				}
				groups[u.ID] = gs
			}
		}
	}
	base := baseURL(ctx)
	out := make([]map[string]any, 0, len(users))
	for _, u := range users {
		res, err := renderUser(u, base, grants[u.ID], groups[u.ID], withGrants, withGroups)
		if err != nil {
			return nil, err
		}
		out = append(out, p.apply(userDef, res))
	}
	return out, nil
}

// visibleUser reads a user that SCIM may see: soft-deleted users are 404.
func visibleUser(ctx context.Context, get func(context.Context, string) (directory.User, error), id string) (directory.User, error) {
	u, err := get(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && u.DeletedAt != nil) {
		return u, notFound("User", id)
	}
	if err != nil {
		return u, fmt.Errorf("scim: get user %s: %w", id, err)
	}
	return u, nil
}

func checkVersion(have, want int64) error {
	if want > 0 && have != want {
		return fmt.Errorf("scim: version %d, If-Match wants %d: %w", have, want, store.ErrVersionMismatch)
	}
	return nil
}

func (o userOps) get(ctx context.Context, id string, p projection) (map[string]any, int64, error) {
	u, err := visibleUser(ctx, o.h.b.GetUser, id)
	if err != nil {
		return nil, 0, err
	}
	res, err := o.render(ctx, o.h.b, u, p)
	return res, u.Version, err
}

func (o userOps) list(ctx context.Context, q listQuery, p projection) ([]map[string]any, int64, error) {
	uq := store.UserQuery{Filter: q.Filter, SortBy: q.SortBy, SortDesc: q.SortDesc, Offset: q.Offset, Limit: q.Limit}
	var page store.Page[directory.User]
	var err error
	if pl, ok := o.h.b.(pageExtrasLister); ok && (p.wants(URNDirsyncd, "roles") || p.wants(URNDirsyncd, "offices") || p.wants("", "groups")) {
		page, grants, groups, err := pl.SCIMListUsersExtras(ctx, uq)
		if err != nil {
			return nil, 0, fmt.Errorf("scim: list users: %w", err)
		}
		out, err := o.renderWith(ctx, o.h.b, page.Items, p, grants, groups)
		if err != nil {
			return nil, 0, err
		}
		return out, page.Total, nil
	}
	if pl, ok := o.h.b.(pageLister); ok {
		page, err = pl.SCIMListUsers(ctx, uq)
	} else {
		page, err = o.h.b.ListUsers(ctx, uq)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("scim: list users: %w", err)
	}
	out, err := o.renderAll(ctx, o.h.b, page.Items, p)
	if err != nil {
		return nil, 0, err
	}
	return out, page.Total, nil
}

// link records that the SCIM client provisioned u (source "scim:<client>",
// key externalId or, without one, the user id). A link still held by a live
// user is left alone; one held by a deleted user moves to u, so that
// re-provisioning a deleted user re-links cleanly.
func (o userOps) link(ctx context.Context, tx store.Tx, source string, u directory.User) error {
	key := u.ExternalID
	if key == "" {
		key = u.ID
	}
	if prev, err := tx.FindUserByLink(ctx, source, key); err == nil && prev.ID != u.ID && prev.DeletedAt == nil {
		return nil
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("scim: find link %s/%s: %w", source, key, err)
	}
	if err := tx.PutLink(ctx, directory.SourceLink{UserID: u.ID, Source: source, Key: key, LastSeenAt: o.h.now().UTC()}); err != nil {
		return fmt.Errorf("scim: link user %s: %w", u.ID, err)
	}
	return nil
}

// revokeGrants removes every grant of a deprovisioned user in the same
// transaction as the deprovisioning, so that access is gone at commit even
// before reconciliation runs; the user is also enqueued, and reconcile,
// seeing an inactive or deleted user, desires no grant either.
func revokeGrants(ctx context.Context, tx store.Tx, userID string) error {
	gs, err := tx.ListGrants(ctx, store.GrantQuery{UserID: userID})
	if err != nil {
		return fmt.Errorf("scim: grants of user %s: %w", userID, err)
	}
	for _, g := range gs {
		if err := tx.DeleteGrant(ctx, g.Key()); err != nil {
			return fmt.Errorf("scim: revoke grant %s/%s of user %s: %w", g.Service, g.Role, userID, err)
		}
	}
	return nil
}

func (o userOps) create(ctx context.Context, m audit.Meta, st map[string]any) (map[string]any, int64, error) {
	u, err := userFromState(st, directory.User{})
	if err != nil {
		return nil, 0, err
	}
	var res map[string]any
	err = o.h.update(ctx, m, func(ctx context.Context, tx store.Tx) error {
		if err := tx.CreateUser(ctx, &u); err != nil {
			return fmt.Errorf("scim: create user %q: %w", u.UserName, err)
		}
		return o.link(ctx, tx, clientSource(ctx), u)
	})
	if err != nil {
		return nil, 0, err
	}
	o.h.enq.Enqueue(ctx, u.ID)
	// Rendered after the commit, through the read pool, so that the
	// (single, on SQLite) writer is held no longer than the change needs.
	res, err = o.render(ctx, o.h.b, u, fullProjection)
	return res, u.Version, err
}

// userLocker is the store's update path for a user read in the same
// transaction (store/sqlstore/scim_users.go): PUT and PATCH read the user
// once instead of twice, and skip the uniqueness checks and the e-mail
// rewrite when those do not change.
type userLocker interface {
	SCIMLockUser(ctx context.Context, id string) (directory.User, error)
	SCIMUpdateUser(ctx context.Context, u *directory.User, cur directory.User, expectVersion int64) error
}

// extrasLocker is SCIMLockUser with the user's grants and groups in the
// same statement (store/sqlstore/scim_users.go), so that the response of a
// PUT or PATCH needs no read after the commit.
type extrasLocker interface {
	SCIMLockUserExtras(ctx context.Context, id string) (directory.User, []directory.Grant, []directory.Group, error)
}

// userExtras are the grants and groups of a user read in its write.
type userExtras struct {
	grants []directory.Grant
	groups []directory.Group
}

// lockForWrite reads the user a PUT or PATCH changes (404 when hidden),
// with its grants and groups when the store reads them alongside (x nil
// otherwise).
func lockForWrite(ctx context.Context, tx store.Tx, id string) (u directory.User, x *userExtras, err error) {
	if l, ok := tx.(extrasLocker); ok {
		x = &userExtras{}
		u, err = visibleUser(ctx, func(ctx context.Context, id string) (directory.User, error) {
			u, gs, ms, err := l.SCIMLockUserExtras(ctx, id)
			x.grants, x.groups = gs, ms
			return u, err
		}, id)
		return u, x, err
	}
	if l, ok := tx.(userLocker); ok {
		u, err = visibleUser(ctx, l.SCIMLockUser, id)
		return u, nil, err
	}
	u, err = visibleUser(ctx, tx.GetUser, id)
	return u, nil, err
}

// renderWritten renders the user a PUT or PATCH stored: with the grants
// and groups read in the write (a write changes neither, except that
// deactivating revokes every grant, in write), or read now.
func (o userOps) renderWritten(ctx context.Context, u directory.User, x *userExtras) (map[string]any, error) {
	if x == nil {
		return o.render(ctx, o.h.b, u, fullProjection)
	}
	out, err := o.renderWith(ctx, o.h.b, []directory.User{u}, fullProjection,
		map[string][]directory.Grant{u.ID: x.grants}, map[string][]directory.Group{u.ID: x.groups})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// write stores next in place of prev (PUT and PATCH): version check,
// deprovisioning, link upkeep, response.
func (o userOps) write(ctx context.Context, tx store.Tx, m audit.Meta, prev, next directory.User, want int64) (directory.User, error) {
	var err error
	if l, ok := tx.(userLocker); ok {
		err = l.SCIMUpdateUser(ctx, &next, prev, want)
	} else {
		err = tx.UpdateUser(ctx, &next, want)
	}
	if err != nil {
		return next, fmt.Errorf("scim: update user %s: %w", prev.ID, err)
	}
	if prev.Active && !next.Active {
		if err := revokeGrants(ctx, tx, next.ID); err != nil {
			return next, err
		}
	}
	if next.ExternalID != prev.ExternalID && next.ExternalID != "" {
		if err := o.link(ctx, tx, clientSource(ctx), next); err != nil {
			return next, err
		}
	}
	return next, nil
}

func (o userOps) replace(ctx context.Context, m audit.Meta, id string, st map[string]any, want int64) (map[string]any, int64, error) {
	var saved directory.User
	var ex *userExtras
	err := o.h.update(ctx, m, func(ctx context.Context, tx store.Tx) error {
		prev, x, err := lockForWrite(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := checkVersion(prev.Version, want); err != nil {
			return err
		}
		if _, ok := st["active"]; !ok { // absent: activation is not changed by a PUT
			st["active"] = prev.Active
		}
		next, err := userFromState(st, prev)
		if err != nil {
			return err
		}
		saved, err = o.write(ctx, tx, m, prev, next, want)
		if x != nil && prev.Active && !saved.Active {
			x.grants = nil // revoked by write
		}
		ex = x
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	o.h.enq.Enqueue(ctx, id)
	res, err := o.renderWritten(ctx, saved, ex)
	return res, saved.Version, err
}

func (o userOps) patch(ctx context.Context, m audit.Meta, id string, ops []patchOp, want int64) (map[string]any, int64, error) {
	var saved directory.User
	var ex *userExtras
	err := o.h.update(ctx, m, func(ctx context.Context, tx store.Tx) error {
		prev, x, err := lockForWrite(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := checkVersion(prev.Version, want); err != nil {
			return err
		}
		st, err := userState(prev)
		if err != nil {
			return err
		}
		pt := patcher{def: userDef, st: st}
		for _, op := range ops {
			if err := pt.apply(op); err != nil {
				return err
			}
		}
		// A PATCH that removes active (remove, or replace with null) leaves
		// it unassigned (RFC 7644 §3.5.2.2), and userFromState would read
		// an unassigned active as true, the default of a POST: a remove
		// sent to deprovision, or sent to an inactive user, would grant
		// again. dirsyncd grants only to a user the identity provider
		// asserts active, so an unassigned active is false here: the user
		// is deprovisioned (fail closed), never silently reactivated. (A
		// 400 instead would leave an active user active when the client
		// meant to deprovision it.) userState always sets active, so only
		// this PATCH's operations can have removed it.
		if _, ok := pt.st["active"].(bool); !ok {
			pt.st["active"] = false
		}
		next, err := userFromState(pt.st, prev)
		if err != nil {
			return err
		}
		saved, err = o.write(ctx, tx, m, prev, next, want)
		if x != nil && prev.Active && !saved.Active {
			x.grants = nil // revoked by write
		}
		ex = x
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	o.h.enq.Enqueue(ctx, id)
	res, err := o.renderWritten(ctx, saved, ex)
	return res, saved.Version, err
}

func (o userOps) delete(ctx context.Context, m audit.Meta, id string, want int64) error {
	err := o.h.update(ctx, m, func(ctx context.Context, tx store.Tx) error {
		prev, err := visibleUser(ctx, tx.GetUser, id)
		if err != nil {
			return err
		}
		if err := checkVersion(prev.Version, want); err != nil {
			return err
		}
		if err := revokeGrants(ctx, tx, id); err != nil {
			return err
		}
		if err := tx.DeleteUser(ctx, id); err != nil {
			return fmt.Errorf("scim: delete user %s: %w", id, err)
		}
		links, err := tx.ListUserLinks(ctx, id)
		if err != nil {
			return fmt.Errorf("scim: links of user %s: %w", id, err)
		}
		for _, l := range links {
			if l.Source == clientSource(ctx) && l.GoneAt == nil {
				if err := tx.MarkLinkGone(ctx, l.Source, l.Key); err != nil {
					return fmt.Errorf("scim: mark link %s gone: %w", l.Key, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	o.h.enq.Enqueue(ctx, id)
	return nil
}
