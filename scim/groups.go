package scim

import (
	"context"
	"errors"
	"fmt"
	"strings"

	filter "github.com/scim2/filter-parser/v2"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

type groupOps struct{ h *Handler }

// memberPage is the page size used when a whole member list is read
// (GET with members, PUT, replace members, DELETE).
const memberPage = 1000

func allMembers(ctx context.Context, rd reader, groupID string) ([]string, error) {
	var out []string
	after := ""
	for {
		ids, err := rd.ListGroupMembers(ctx, groupID, after, memberPage)
		if err != nil {
			return nil, fmt.Errorf("scim: members of group %s: %w", groupID, err)
		}
		out = append(out, ids...)
		if len(ids) < memberPage {
			return out, nil
		}
		after = ids[len(ids)-1]
	}
}

// visibleGroup reads a group the calling SCIM client may see: one it
// provisioned (source "scim:<client>", clientSource) and not deleted.
// Other sources' groups, other SCIM clients' included, are 404.
func visibleGroup(ctx context.Context, get func(context.Context, string) (directory.Group, error), id string) (directory.Group, error) {
	g, err := get(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (g.DeletedAt != nil || !ownGroup(ctx, g))) {
		return g, notFound("Group", id)
	}
	if err != nil {
		return g, fmt.Errorf("scim: get group %s: %w", id, err)
	}
	return g, nil
}

func (o groupOps) render(ctx context.Context, rd reader, g directory.Group, p projection) (map[string]any, error) {
	withMembers := p.wants("", "members")
	var members []string
	if withMembers {
		var err error
		if members, err = allMembers(ctx, rd, g.ID); err != nil {
			return nil, err
		}
	}
	return p.apply(groupDef, renderGroup(g, baseURL(ctx), members, withMembers)), nil
}

func (o groupOps) get(ctx context.Context, id string, p projection) (map[string]any, int64, error) {
	g, err := visibleGroup(ctx, o.h.b.GetGroup, id)
	if err != nil {
		return nil, 0, err
	}
	res, err := o.render(ctx, o.h.b, g, p)
	return res, g.Version, err
}

func (o groupOps) list(ctx context.Context, q listQuery, p projection) ([]map[string]any, int64, error) {
	page, err := o.h.b.ListGroups(ctx, store.GroupQuery{Filter: scimGroups(clientSource(ctx), q.Filter), SortBy: q.SortBy, SortDesc: q.SortDesc, Offset: q.Offset, Limit: q.Limit})
	if err != nil {
		return nil, 0, fmt.Errorf("scim: list groups: %w", err)
	}
	out := make([]map[string]any, 0, len(page.Items))
	for _, g := range page.Items {
		res, err := o.render(ctx, o.h.b, g, p)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, res)
	}
	return out, page.Total, nil
}

// scimGroups narrows a group filter to the groups of the calling SCIM
// client (source), the only groups it is served (visibleGroup applies the
// same rule by id).
func scimGroups(source string, f store.Filter) store.Filter {
	src := store.Cmp{Field: "source", Op: store.OpEq, Value: source}
	if f == nil {
		return src
	}
	return store.And{Left: src, Right: f}
}

// scimSourcePrefix starts the source of every SCIM-provisioned group.
const scimSourcePrefix = "scim:"

// ownGroup tells whether g was provisioned by the calling SCIM client.
func ownGroup(ctx context.Context, g directory.Group) bool {
	src := clientSource(ctx)
	return strings.HasPrefix(src, scimSourcePrefix) && g.Source == src
}

// missingUsers is the store's one-query check of member ids
// (store/sqlstore/scim_users.go).
type missingUsers interface {
	SCIMMissingUsers(ctx context.Context, ids []string) ([]string, error)
}

// groupMemberWriter is the store's PATCH path for members
// (store/sqlstore/scim_groups.go): the group read and locked once, each
// add or remove one statement, the member check only when an id is not
// added.
type groupMemberWriter interface {
	SCIMLockGroup(ctx context.Context, id string) (directory.Group, error)
	SCIMAddMembers(ctx context.Context, groupID string, userIDs []string) (missing []string, err error)
	SCIMRemoveMembers(ctx context.Context, groupID string, userIDs []string) error
}

// checkUsers verifies that every id names a live user: O(len(ids)).
func checkUsers(ctx context.Context, tx store.Tx, ids []string) error {
	if mu, ok := tx.(missingUsers); ok {
		missing, err := mu.SCIMMissingUsers(ctx, ids)
		if err != nil {
			return fmt.Errorf("scim: check members: %w", err)
		}
		if len(missing) > 0 {
			return badRequest(TypeInvalidValue, "member %q is not a user", missing[0])
		}
		return nil
	}
	for _, id := range ids {
		u, err := tx.GetUser(ctx, id)
		if errors.Is(err, store.ErrNotFound) || (err == nil && u.DeletedAt != nil) {
			return badRequest(TypeInvalidValue, "member %q is not a user", id)
		}
		if err != nil {
			return fmt.Errorf("scim: get member %s: %w", id, err)
		}
	}
	return nil
}

func stateMembers(st map[string]any) ([]string, bool, error) {
	v, ok := st["members"]
	if !ok {
		return nil, false, nil
	}
	ids, err := memberIDs(v)
	return ids, true, err
}

func (o groupOps) create(ctx context.Context, m audit.Meta, st map[string]any) (map[string]any, int64, error) {
	g, err := groupFromState(st, directory.Group{Source: clientSource(ctx)})
	if err != nil {
		return nil, 0, err
	}
	g.SourceKey = g.ExternalID
	ids, _, err := stateMembers(st)
	if err != nil {
		return nil, 0, err
	}
	err = o.h.update(ctx, m, func(ctx context.Context, tx store.Tx) error {
		if err := tx.CreateGroup(ctx, &g); err != nil {
			return fmt.Errorf("scim: create group %q: %w", g.DisplayName, err)
		}
		if len(ids) > 0 {
			if err := checkUsers(ctx, tx, ids); err != nil {
				return err
			}
			if err := tx.AddMembers(ctx, g.ID, ids); err != nil {
				return fmt.Errorf("scim: add members to group %s: %w", g.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	o.h.enq.Enqueue(ctx, ids...)
	return o.renderCommitted(ctx, g.ID)
}

func (o groupOps) replace(ctx context.Context, m audit.Meta, id string, st map[string]any, want int64) (map[string]any, int64, error) {
	var affected []string
	err := o.h.update(ctx, m, func(ctx context.Context, tx store.Tx) error {
		prev, err := visibleGroup(ctx, tx.GetGroup, id)
		if err != nil {
			return err
		}
		if err := checkVersion(prev.Version, want); err != nil {
			return err
		}
		next, err := groupFromState(st, prev)
		if err != nil {
			return err
		}
		ids, _, err := stateMembers(st)
		if err != nil {
			return err
		}
		if err := tx.UpdateGroup(ctx, &next, want); err != nil {
			return fmt.Errorf("scim: update group %s: %w", id, err)
		}
		affected, err = replaceMembers(ctx, tx, id, ids)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	o.h.enq.Enqueue(ctx, affected...)
	return o.renderCommitted(ctx, id)
}

// renderCommitted reads a group after its change committed (through the
// read pool, so that the writer is not held for the response).
func (o groupOps) renderCommitted(ctx context.Context, id string) (map[string]any, int64, error) {
	g, err := o.h.b.GetGroup(ctx, id)
	if err != nil {
		return nil, 0, fmt.Errorf("scim: reread group %s: %w", id, err)
	}
	res, err := o.render(ctx, o.h.b, g, fullProjection)
	return res, g.Version, err
}

// replaceMembers sets the member list and returns the users whose
// membership changed.
func replaceMembers(ctx context.Context, tx store.Tx, groupID string, ids []string) ([]string, error) {
	old, err := allMembers(ctx, tx, groupID)
	if err != nil {
		return nil, err
	}
	if err := checkUsers(ctx, tx, newOnly(ids, old)); err != nil {
		return nil, err
	}
	if err := tx.ReplaceMembers(ctx, groupID, ids); err != nil {
		return nil, fmt.Errorf("scim: replace members of group %s: %w", groupID, err)
	}
	return append(newOnly(ids, old), newOnly(old, ids)...), nil
}

// newOnly returns the ids of a that are not in b.
func newOnly(a, b []string) []string {
	in := make(map[string]bool, len(b))
	for _, id := range b {
		in[id] = true
	}
	var out []string
	for _, id := range a {
		if !in[id] {
			out = append(out, id)
		}
	}
	return out
}

type memberChange struct {
	op  string // add, remove, replace
	ids []string
}

// groupMemberLockWriter is groupMemberWriter's lock and one member write
// in one statement (store/sqlstore/scim_groups.go), for a PATCH whose one
// operation adds members or removes members[value eq "…"]: on PostgreSQL
// the request is then two round trips instead of three.
type groupMemberLockWriter interface {
	SCIMLockGroupChangeMembers(ctx context.Context, groupID string, add bool, userIDs []string, visible func(directory.Group) bool) (directory.Group, []string, error)
}

// membersOnly recognises the PATCH operation groupMemberLockWriter serves:
// "add" with path members and a value, or "remove" with path
// members[value eq "…"] (or-ed). Anything else, including what fails to
// parse, takes the general path, which reports the errors.
func membersOnly(op patchOp) (add bool, ids []string, ok bool) {
	p, err := parsePath(op.Path)
	if err != nil || p.AttributePath.URIPrefix != nil || p.AttributePath.SubAttribute != nil || p.SubAttribute != nil ||
		!strings.EqualFold(p.AttributePath.AttributeName, "members") {
		return false, nil, false
	}
	switch {
	case strings.EqualFold(op.Op, "add") && p.ValueExpression == nil && op.HasValue && op.Value != nil:
		ids, err = memberIDs(op.Value)
		add = true
	case strings.EqualFold(op.Op, "remove") && p.ValueExpression != nil:
		ids, err = memberIDsFromFilter(p.ValueExpression)
	default:
		return false, nil, false
	}
	if err != nil || len(ids) == 0 {
		return false, nil, false
	}
	return add, ids, true
}

func (o groupOps) patch(ctx context.Context, m audit.Meta, id string, ops []patchOp, want int64) (map[string]any, int64, error) {
	var affected []string
	var oneAdd bool
	var oneIDs []string
	one := false
	if len(ops) == 1 {
		oneAdd, oneIDs, one = membersOnly(ops[0])
	}
	err := o.h.update(ctx, m, func(ctx context.Context, tx store.Tx) error {
		if lw, ok := tx.(groupMemberLockWriter); ok && one {
			// The members are written before the checks below; a failed
			// check fails the transaction, which undoes the write.
			g, missing, err := lw.SCIMLockGroupChangeMembers(ctx, id, oneAdd, oneIDs, func(g directory.Group) bool {
				return ownGroup(ctx, g)
			})
			if _, err := visibleGroup(ctx, func(context.Context, string) (directory.Group, error) { return g, err }, id); err != nil {
				return err
			}
			if err := checkVersion(g.Version, want); err != nil {
				return err
			}
			if len(missing) > 0 {
				return badRequest(TypeInvalidValue, "member %q is not a user", missing[0])
			}
			affected = append(affected, oneIDs...)
			return nil
		}
		gm, fast := tx.(groupMemberWriter)
		get := tx.GetGroup
		if fast {
			get = gm.SCIMLockGroup
		}
		prev, err := visibleGroup(ctx, get, id)
		if err != nil {
			return err
		}
		if err := checkVersion(prev.Version, want); err != nil {
			return err
		}
		var changes []memberChange
		pt := patcher{def: groupDef, st: groupState(prev), members: func(op string, vf filter.Expression, value any, hasValue bool) error {
			if vf != nil {
				if op != "remove" {
					return badRequest(TypeInvalidPath, "members[...] can only be removed")
				}
				ids, err := memberIDsFromFilter(vf)
				if err != nil {
					return err
				}
				changes = append(changes, memberChange{op: "remove", ids: ids})
				return nil
			}
			var ids []string
			if hasValue && value != nil {
				var err error
				if ids, err = memberIDs(value); err != nil {
					return err
				}
			}
			switch {
			case op == "remove" && (!hasValue || value == nil):
				changes = append(changes, memberChange{op: "replace"}) // remove all
			default:
				changes = append(changes, memberChange{op: op, ids: ids})
			}
			return nil
		}}
		for _, op := range ops {
			if err := pt.apply(op); err != nil {
				return err
			}
		}
		next, err := groupFromState(pt.st, prev)
		if err != nil {
			return err
		}
		if next.DisplayName != prev.DisplayName || next.ExternalID != prev.ExternalID {
			if err := tx.UpdateGroup(ctx, &next, 0); err != nil {
				return fmt.Errorf("scim: update group %s: %w", id, err)
			}
		}
		for _, c := range changes {
			switch c.op {
			case "add":
				if fast {
					missing, err := gm.SCIMAddMembers(ctx, id, c.ids)
					if err != nil {
						return fmt.Errorf("scim: add members to group %s: %w", id, err)
					}
					if len(missing) > 0 {
						return badRequest(TypeInvalidValue, "member %q is not a user", missing[0])
					}
				} else {
					if err := checkUsers(ctx, tx, c.ids); err != nil {
						return err
					}
					if err := tx.AddMembers(ctx, id, c.ids); err != nil {
						return fmt.Errorf("scim: add members to group %s: %w", id, err)
					}
				}
				affected = append(affected, c.ids...)
			case "remove":
				rm := tx.RemoveMembers
				if fast {
					rm = gm.SCIMRemoveMembers
				}
				if err := rm(ctx, id, c.ids); err != nil {
					return fmt.Errorf("scim: remove members from group %s: %w", id, err)
				}
				affected = append(affected, c.ids...)
			case "replace":
				ids, err := replaceMembers(ctx, tx, id, c.ids)
				if err != nil {
					return err
				}
				affected = append(affected, ids...)
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	o.h.enq.Enqueue(ctx, affected...)
	return nil, 0, nil // 204: what Entra expects and Okta accepts
}

func (o groupOps) delete(ctx context.Context, m audit.Meta, id string, want int64) error {
	var members []string
	err := o.h.update(ctx, m, func(ctx context.Context, tx store.Tx) error {
		prev, err := visibleGroup(ctx, tx.GetGroup, id)
		if err != nil {
			return err
		}
		if err := checkVersion(prev.Version, want); err != nil {
			return err
		}
		if members, err = allMembers(ctx, tx, id); err != nil {
			return err
		}
		if err := tx.DeleteGroup(ctx, id); err != nil {
			return fmt.Errorf("scim: delete group %s: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	o.h.enq.Enqueue(ctx, members...)
	return nil
}
