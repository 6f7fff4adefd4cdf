package ldapsync

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-ldap/ldap/v3"
	"go.uber.org/zap"

	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// Active Directory tombstones: an incremental AD run also reads the
// objects deleted since its cursor (CN=Deleted Objects of the domain, with
// the Show Deleted control, filter isDeleted=TRUE and uSNChanged past the
// cursor) and marks the link of each deleted user gone, and removes (soft)
// each deleted group, at once rather than at the next full sync. A
// tombstone is the server saying the object was deleted, not an absence,
// so this is safe in an incremental run. "Where readable": a bind account
// that may not read deleted objects (or a DC without the container or the
// control) gets an LDAP result error; the run goes on without tombstones
// (tombstones_unreadable, a warning), and the next full sync finds those
// deletions. Any other failure (network, timeout) fails the run as usual.

// deletedObjectsDN is "CN=Deleted Objects" of the domain of the first user
// base DN (its DC= components), "" when it has none.
func deletedObjectsDN(bases []string) string {
	if len(bases) == 0 {
		return ""
	}
	dn, err := ldap.ParseDN(bases[0])
	if err != nil {
		return ""
	}
	var dcs []string
	for _, rdn := range dn.RDNs {
		for _, a := range rdn.Attributes {
			if strings.EqualFold(a.Type, "DC") {
				dcs = append(dcs, "DC="+a.Value)
			}
		}
	}
	if len(dcs) == 0 {
		return ""
	}
	return "CN=Deleted Objects," + strings.Join(dcs, ",")
}

// tombstoneUnreadable are the result codes that mean "deleted objects are
// not readable here", not "the read failed".
var tombstoneUnreadable = []uint16{ldap.LDAPResultInsufficientAccessRights, ldap.LDAPResultNoSuchObject,
	ldap.LDAPResultUnavailableCriticalExtension, ldap.LDAPResultUnwillingToPerform}

// tombstones applies the deletions AD recorded since the cursor.
func (r *run) tombstones(ctx context.Context) error {
	base := deletedObjectsDN(r.s.src.UserBaseDNs)
	if base == "" {
		return nil
	}
	filter := fmt.Sprintf("(&(isDeleted=TRUE)(uSNChanged>=%d))", r.prev.USN+1)
	attrs := []string{r.s.src.Attributes.StableID, "lastKnownParent", "uSNChanged", "objectClass"}
	var ops []op
	var items []directory.RunItem
	// planTombstone counts what it plans; a read that becomes unreadable
	// part way applies nothing, so it counts nothing either.
	gone, groupsGone := r.res.Counts["gone"], r.res.Counts["groups_gone"]
	err := pagedSearchWith(ctx, r.conn, base, filter, attrs, r.s.src.PageSize, timeLimit(r.s.src.RequestTimeout),
		[]ldap.Control{ldap.NewControlMicrosoftShowDeleted()}, func(entries []*ldap.Entry) error {
			for _, e := range entries {
				r.trackChange(r.m.changeOf(e))
				key, err := r.m.stableID(e)
				if err != nil {
					continue // not one of ours to find
				}
				o, it, err := r.planTombstone(ctx, key, e)
				if err != nil {
					return err
				}
				ops, items = append(ops, o...), append(items, it...)
			}
			return nil
		})
	if ldap.IsErrorAnyOf(err, tombstoneUnreadable...) {
		r.log.Warn("ldap sync: deleted objects not readable; deletions wait for the next full sync", zap.String("base", base), zap.Error(err))
		r.res.Counts["tombstones_unreadable"] = 1
		r.setCount("gone", gone)
		r.setCount("groups_gone", groupsGone)
		return nil
	}
	if err != nil {
		return err
	}
	return r.commit(ctx, ops, items)
}

// planTombstone plans what one deleted object means: a linked user's link
// is marked gone (the user and its history stay), a group is removed.
func (r *run) planTombstone(ctx context.Context, key string, e *ldap.Entry) ([]op, []directory.RunItem, error) {
	where := e.GetEqualFoldAttributeValue("lastKnownParent")
	if l, err := r.linkFor(ctx, key); err != nil {
		return nil, nil, err
	} else if l != nil && l.userID != "" && !l.gone {
		r.res.Counts["gone"]++
		return []op{func(ctx context.Context, w writer) error {
				if err := w.MarkLinkGone(ctx, r.s.source, key); err != nil {
					return fmt.Errorf("ldapsync: mark gone %s: %w", key, err)
				}
				return nil
			}}, []directory.RunItem{r.item("gone", "user", l.userID,
				fmt.Sprintf("entry %s (%s) was deleted in Active Directory (tombstone, last in %s): link marked gone, user kept", l.dn, key, where))}, nil
	}
	g, err := r.s.st.FindGroupBySourceKey(ctx, r.s.source, key)
	if errors.Is(err, store.ErrNotFound) || (err == nil && g.DeletedAt != nil) {
		return nil, nil, nil // not ours, or removed already
	}
	if err != nil {
		return nil, nil, fmt.Errorf("ldapsync: find group %s: %w", key, err)
	}
	r.res.Counts["groups_gone"]++
	return []op{func(ctx context.Context, w writer) error {
			if err := w.DeleteGroup(ctx, g.ID); err != nil {
				return fmt.Errorf("ldapsync: remove group %s: %w", g.DN, err)
			}
			return nil
		}}, []directory.RunItem{r.item("gone", "group", g.ID,
			fmt.Sprintf("entry %s was deleted in Active Directory (tombstone, last in %s): group removed (soft)", g.DN, where))}, nil
}

// setCount sets a count, leaving out a zero one as if never counted.
func (r *run) setCount(name string, v int64) {
	if v == 0 {
		delete(r.res.Counts, name)
		return
	}
	r.res.Counts[name] = v
}
