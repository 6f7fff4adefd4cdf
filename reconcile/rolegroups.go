package reconcile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"go.uber.org/zap"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/mapping"
	"github.com/dirsyncd/dirsyncd/store"
)

// ErrNoGroup is returned by a RoleGroupDirectory for a group that does not
// exist.
var ErrNoGroup = errors.New("no such group")

// RoleGroupDirectory is the target directory holding one group per role
// (implemented by reconcile/ldaptarget over LDAP). Members are DNs; writes
// add or delete values, never replace a whole member list.
type RoleGroupDirectory interface {
	Members(ctx context.Context, groupDN string) ([]string, error) // ErrNoGroup when absent
	Create(ctx context.Context, groupDN string, members []string) error
	AddMembers(ctx context.Context, groupDN string, members []string) error
	RemoveMembers(ctx context.Context, groupDN string, members []string) error
}

// RoleGroupsOptions configure RoleGroups.
type RoleGroupsOptions struct {
	// Source is the LDAP link source ("ldap:<name>") whose DNs are written.
	Source string
	// Template names each role's group: {service}, {role} and {ou}.
	Template string
	OU       string
	// Correct out-of-band changes (drift); otherwise only report them and
	// leave the group alone.
	Correct bool
	Logger  *zap.Logger
}

// RoleGroups keeps the role groups of a target directory equal to the
// holders of each role.
type RoleGroups struct {
	s   Store
	cat *mapping.Catalogue
	dir RoleGroupDirectory
	o   RoleGroupsOptions
	log *zap.Logger
}

// NewRoleGroups returns a RoleGroups target.
func NewRoleGroups(s Store, cat *mapping.Catalogue, dir RoleGroupDirectory, o RoleGroupsOptions) *RoleGroups {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return &RoleGroups{s: s, cat: cat, dir: dir, o: o, log: o.Logger.Named("reconcile")}
}

// GroupDN returns the DN of a role's group.
func (rg *RoleGroups) GroupDN(r *mapping.Role) string {
	return strings.NewReplacer("{service}", r.ServiceSlug(), "{role}", r.Slug, "{ou}", rg.o.OU).Replace(rg.o.Template)
}

// GroupChange is what a sync did (or, for unfixed drift, saw) in one group.
type GroupChange struct {
	Group   string   `json:"group"`
	Role    string   `json:"role"`
	Created bool     `json:"created,omitempty"`
	Drift   bool     `json:"drift,omitempty"` // changed out of band since dirsyncd last wrote it
	Fixed   bool     `json:"fixed"`           // the group now has the desired members
	Added   []string `json:"added,omitempty"`
	Removed []string `json:"removed,omitempty"`
}

// cursorKey is where the hash of the member list last written is kept
// (store cursors), so a later difference dirsyncd did not make is drift.
func cursorKey(dn string) string { return "rolegroup:" + strings.ToLower(dn) }

func memberHash(members []string) string {
	norm := make([]string, len(members))
	for i, m := range members {
		norm[i] = normDN(m)
	}
	sort.Strings(norm)
	h := sha256.Sum256([]byte(strings.Join(slices.Compact(norm), "\n")))
	return hex.EncodeToString(h[:])
}

func normDN(dn string) string {
	parts := strings.Split(dn, ",")
	for i, p := range parts {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		parts[i] = strings.ToLower(strings.TrimSpace(k)) + "=" + strings.ToLower(strings.TrimSpace(v))
	}
	return strings.Join(parts, ",")
}

// Sync brings every role group to the role's holders (users with a live
// link of the source, holding the role in any firm). Each write is followed
// by an audited record of the new member hash (actor reconcile, runID).
func (rg *RoleGroups) Sync(ctx context.Context, runID string) ([]GroupChange, error) {
	dns := map[string]string{} // user id -> DN
	after := ""
	for {
		ls, err := rg.s.ListLinks(ctx, rg.o.Source, after, pageSize)
		if err != nil {
			return nil, fmt.Errorf("reconcile: list links of %s: %w", rg.o.Source, err)
		}
		for _, l := range ls {
			if l.GoneAt == nil && l.DN != "" {
				dns[l.UserID] = l.DN
			}
		}
		if len(ls) < pageSize {
			break
		}
		after = ls[len(ls)-1].Key
	}
	grants, err := rg.s.ListGrants(ctx, store.GrantQuery{})
	if err != nil {
		return nil, fmt.Errorf("reconcile: list grants: %w", err)
	}
	holders := map[string]map[string]string{} // role id -> norm DN -> DN
	for _, g := range grants {
		dn, ok := dns[g.UserID]
		if !ok {
			continue
		}
		id := g.Service + "/" + g.Role
		if holders[id] == nil {
			holders[id] = map[string]string{}
		}
		holders[id][normDN(dn)] = dn
	}
	var out []GroupChange
	for _, role := range rg.cat.Roles() {
		c, err := rg.syncGroup(ctx, runID, role, holders[role.ID()])
		if err != nil {
			return out, err
		}
		if c != nil {
			out = append(out, *c)
		}
	}
	return out, nil
}

func (rg *RoleGroups) syncGroup(ctx context.Context, runID string, role *mapping.Role, want map[string]string) (*GroupChange, error) {
	dn := rg.GroupDN(role)
	desired := make([]string, 0, len(want))
	for _, d := range want {
		desired = append(desired, d)
	}
	sort.Strings(desired)
	c := &GroupChange{Group: dn, Role: role.ID()}
	actual, err := rg.dir.Members(ctx, dn)
	switch {
	case errors.Is(err, ErrNoGroup):
		if len(desired) == 0 {
			return nil, nil
		}
		if err := rg.dir.Create(ctx, dn, desired); err != nil {
			return nil, fmt.Errorf("reconcile: create role group %s: %w", dn, err)
		}
		c.Created, c.Fixed, c.Added = true, true, desired
		return c, rg.remember(ctx, runID, c, desired)
	case err != nil:
		return nil, fmt.Errorf("reconcile: read role group %s: %w", dn, err)
	}
	have := map[string]string{}
	for _, m := range actual {
		have[normDN(m)] = m
	}
	for k, d := range want {
		if _, ok := have[k]; !ok {
			c.Added = append(c.Added, d)
		}
	}
	for k, m := range have {
		if _, ok := want[k]; !ok {
			c.Removed = append(c.Removed, m)
		}
	}
	sort.Strings(c.Added)
	sort.Strings(c.Removed)
	last, err := rg.s.GetCursor(ctx, cursorKey(dn))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("reconcile: read role group state %s: %w", dn, err)
	}
	c.Drift = last != "" && last != memberHash(actual)
	if len(c.Added) == 0 && len(c.Removed) == 0 {
		if c.Drift { // changed out of band and back to what we want: just remember it
			c.Fixed = true
			return c, rg.remember(ctx, runID, c, actual)
		}
		return nil, nil
	}
	if c.Drift && !rg.o.Correct {
		rg.log.Warn("role group drift (not corrected)", zap.String("group", dn), zap.String("run_id", runID),
			zap.Int("missing", len(c.Added)), zap.Int("unexpected", len(c.Removed)))
		return c, nil
	}
	if len(c.Added) > 0 {
		if err := rg.dir.AddMembers(ctx, dn, c.Added); err != nil {
			return nil, fmt.Errorf("reconcile: add members to %s: %w", dn, err)
		}
	}
	if len(c.Removed) > 0 {
		if err := rg.dir.RemoveMembers(ctx, dn, c.Removed); err != nil {
			return nil, fmt.Errorf("reconcile: remove members from %s: %w", dn, err)
		}
	}
	c.Fixed = true
	if c.Drift {
		rg.log.Warn("role group drift corrected", zap.String("group", dn), zap.String("run_id", runID))
	}
	return c, rg.remember(ctx, runID, c, desired)
}

// remember stores the hash of what the group now holds and records the
// change in the audit log.
func (rg *RoleGroups) remember(ctx context.Context, runID string, c *GroupChange, members []string) error {
	return rg.s.Update(ctx, audit.Meta{Actor: audit.ActorReconcile, RunID: runID}, func(ctx context.Context, tx store.Tx) error {
		if err := tx.SetCursor(ctx, cursorKey(c.Group), memberHash(members)); err != nil {
			return err
		}
		action := "rolegroup.sync"
		if c.Drift {
			action = "rolegroup.drift"
		}
		return tx.Record(ctx, action, "rolegroup", c.Group, nil, c)
	})
}
