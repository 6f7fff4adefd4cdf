package ldapsync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/go-ldap/ldap/v3"

	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// grp is a fetched group with members resolved against the run's user
// index; others are member values that are not users (candidate groups).
type grp struct {
	key, dn, name string
	users         []int32
	others        []string
}

// countGroups counts groups matching filter (incremental: did any change?).
func (r *run) countGroups(ctx context.Context, filter string) (int, error) {
	n := 0
	for _, base := range r.s.src.GroupBaseDNs {
		err := pagedSearch(ctx, r.conn, base, filter, append([]string{r.s.src.Attributes.StableID}, r.m.changeAttrs()...),
			r.s.src.GroupPage(), timeLimit(r.s.src.RequestTimeout), func(entries []*ldap.Entry) error {
				for _, e := range entries {
					r.trackChange(r.m.changeOf(e))
				}
				n += len(entries)
				return nil
			})
		if err != nil {
			return 0, err
		}
	}
	return n, nil
}

func (r *run) trackChange(c change) {
	if c.usn > r.maxChange.usn {
		r.maxChange.usn = c.usn
	}
	if c.modTime > r.maxChange.modTime {
		r.maxChange.modTime = c.modTime
	}
}

func (r *run) loadGroups(ctx context.Context) error {
	r.groups, r.groupNames = map[string]directory.Group{}, map[string]string{}
	q := store.GroupQuery{Limit: 1000, IncludeDeleted: true}
	for {
		p, err := r.s.st.ListGroups(ctx, q)
		if err != nil {
			return fmt.Errorf("ldapsync: list groups: %w", err)
		}
		for _, g := range p.Items {
			if g.Source != r.s.source {
				continue
			}
			if cur, seen := r.groups[g.SourceKey]; seen && cur.DeletedAt == nil && g.DeletedAt != nil {
				continue // a returned group's live record wins over its deleted one
			}
			r.groups[g.SourceKey] = g
			if g.DeletedAt == nil {
				r.groupNames[lower(g.DisplayName)] = g.SourceKey
			}
		}
		if len(p.Items) < q.Limit {
			return nil
		}
		q.Offset += len(p.Items)
	}
}

// writeGroups creates and updates groups, then diffs memberships and
// group-in-group edges; with gone it also removes groups missing from a
// complete full read. It runs only after the safety checks passed.
func (r *run) writeGroups(ctx context.Context, groups []grp, gone bool) error {
	if err := r.loadGroups(ctx); err != nil {
		return err
	}
	nested := r.s.src.NestedEnabled()
	byDN := make(map[string]int, len(groups))
	for i, g := range groups {
		byDN[normDN(g.dn)] = i
	}
	gr := graph{users: make([][]int32, len(groups)), children: make([][]int, len(groups))}
	unknown := 0
	for i, g := range groups {
		gr.users[i] = g.users
		for _, o := range g.others {
			if j, ok := byDN[o]; ok {
				if nested {
					gr.children[i] = append(gr.children[i], j)
				}
			} else {
				unknown++
			}
		}
		groups[i].others = nil
	}
	r.res.Counts["unknown_members"] = int64(unknown)
	var eff [][]int32
	var comp []int
	if nested {
		var cycles [][]int
		eff, cycles, comp = gr.resolve()
		var items []directory.RunItem
		for _, c := range cycles {
			var dns []string
			for _, i := range c {
				dns = append(dns, groups[i].dn)
			}
			items = append(items, r.item("cycle", "group", groups[c[0]].dn,
				"nested groups form a cycle (members resolved once for all; the edges inside it are not stored): "+strings.Join(dns, ", ")))
			r.res.Counts["group_cycles"]++
		}
		if err := r.commit(ctx, nil, items); err != nil {
			return err
		}
	} else {
		eff = make([][]int32, len(groups))
		for i, u := range gr.users {
			s := slices.Clone(u)
			slices.Sort(s)
			eff[i] = slices.Compact(s)
		}
	}

	// Pass 1: the groups themselves.
	gid := make([]string, len(groups))
	var ops []op
	var items []directory.RunItem
	flush := func() error {
		err := r.commit(ctx, ops, items)
		ops, items = nil, nil
		return err
	}
	for i, g := range groups {
		st, ok := r.groups[g.key]
		// A group dirsyncd deleted whose entry is back with the same stable
		// id (an AD recycle-bin restore) is provisioned again as a new group;
		// the deleted record keeps its history.
		returned := ok && st.DeletedAt != nil
		if returned {
			ok = false
		}
		if other, taken := r.groupNames[lower(g.name)]; taken && other != g.key {
			items = append(items, r.item("failed", "group", g.dn, fmt.Sprintf("entry %s: displayName %q is already used by group %s of this source", g.dn, g.name, other)))
			r.res.Counts["failed"]++
			continue
		}
		r.groupNames[lower(g.name)] = g.key
		if !ok {
			i, g := i, g
			gid[i] = "new:" + g.key
			ops = append(ops, func(ctx context.Context, w writer) error {
				ng := directory.Group{Source: r.s.source, SourceKey: g.key, DisplayName: g.name, DN: g.dn}
				if err := w.CreateGroup(ctx, &ng); err != nil {
					return fmt.Errorf("ldapsync: create group %s: %w", g.dn, err)
				}
				gid[i] = ng.ID
				return nil
			})
			reason := fmt.Sprintf("entry %s: new group %s", g.dn, g.name)
			if returned {
				reason += fmt.Sprintf(" (the entry is back; group %s stays deleted with its history)", st.ID)
			}
			items = append(items, r.item("created", "group", g.dn, reason))
			r.res.Counts["groups_created"]++
		} else {
			gid[i] = st.ID
			if st.DisplayName != g.name || st.DN != g.dn {
				var why []string
				if st.DisplayName != g.name {
					why = append(why, fmt.Sprintf("displayName %q -> %q", st.DisplayName, g.name))
				}
				if st.DN != g.dn {
					why = append(why, "renamed from "+st.DN)
				}
				up := st
				up.DisplayName, up.DN = g.name, g.dn
				ops = append(ops, func(ctx context.Context, w writer) error {
					if err := w.UpdateGroup(ctx, &up, 0); err != nil {
						return fmt.Errorf("ldapsync: update group %s: %w", g.dn, err)
					}
					return nil
				})
				items = append(items, r.item("updated", "group", st.ID, fmt.Sprintf("entry %s: %s", g.dn, strings.Join(why, "; "))))
				r.res.Counts["groups_updated"]++
			}
		}
		if len(ops) >= 200 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}

	// Pass 2: memberships and edge removals; pass 3: edge additions.
	// A group whose resolved members hash to its fingerprint's digest while
	// the group is at the fingerprint's version has them already: only the
	// others' members are read.
	memberIDs := make([][]string, len(groups)) // sorted, unique; a set is built only for groups to diff
	digests := make([]string, len(groups))
	stale := map[string]bool{}
	gfps, err := r.groupFingerprints(ctx)
	if err != nil {
		return err
	}
	for i := range groups {
		id := gid[i]
		if id == "" {
			continue
		}
		ids := make([]string, 0, len(eff[i]))
		for _, ui := range eff[i] {
			if uid := r.ids[ui]; uid != "" {
				ids = append(ids, uid) // "new:<key>": not created (dry run, failed create), not written
			}
		}
		slices.Sort(ids)
		ids = slices.Compact(ids)
		memberIDs[i], digests[i] = ids, memberDigest(ids)
		if f, ok := gfps[groups[i].key]; !strings.HasPrefix(id, "new:") && (!ok || f.GroupID != id || !f.Fresh() || f.Digest != digests[i]) {
			stale[id] = true
		}
	}
	haveMembers, haveEdges, err := r.storedGraph(ctx, stale)
	if err != nil {
		return err
	}
	r.res.Counts["groups_members_read"] = int64(len(stale))
	pendingChanges := 0
	var childAdds []op
	for i, g := range groups {
		id := gid[i]
		if id == "" {
			continue
		}
		ids := memberIDs[i]
		memberIDs[i] = nil
		var want map[string]bool // set only for a group whose members are diffed
		wantChildren := map[string]bool{}
		for _, c := range gr.children[i] {
			// Edges inside a cycle are not stored: the store keeps a DAG.
			if cid := gid[c]; cid != "" && comp[c] != comp[i] {
				wantChildren[cid] = true
			}
		}
		var add, rem []string
		if strings.HasPrefix(id, "new:") || stale[id] { // else the fingerprint says the members are ids
			want = make(map[string]bool, len(ids))
			for _, x := range ids {
				want[x] = true
			}
			add, rem = diff(want, haveMembers[id])
		}
		delete(haveMembers, id)
		haveChildren := haveEdges[id]
		addC, remC := diff(wantChildren, haveChildren)
		memberOps := len(add)+len(rem) > 0
		if !memberOps && stale[id] {
			if st, ok := r.groups[g.key]; ok && st.ID == id {
				// Members as they should be: the version read before them.
				r.gfps = append(r.gfps, store.GroupFingerprint{Key: g.key, GroupID: id, Digest: digests[i], GroupVersion: st.Version})
			}
		}
		if len(add)+len(rem)+len(addC)+len(remC) == 0 {
			continue
		}
		i := i
		ops = append(ops, func(ctx context.Context, w writer) error {
			id := gid[i] // set by pass 1 for new groups
			fix := func(ids []string) []string {
				out := ids[:0:0]
				for _, x := range ids {
					if strings.HasPrefix(x, "new:") {
						continue // a user or group whose create failed
					}
					out = append(out, x)
				}
				return out
			}
			if a := fix(add); len(a) > 0 {
				if err := w.AddMembers(ctx, id, a); err != nil {
					return fmt.Errorf("ldapsync: add members to %s: %w", g.dn, err)
				}
			}
			if len(rem) > 0 {
				if err := w.RemoveMembers(ctx, id, rem); err != nil {
					return fmt.Errorf("ldapsync: remove members from %s: %w", g.dn, err)
				}
			}
			for _, c := range remC {
				if err := w.RemoveGroupChild(ctx, id, c); err != nil {
					return fmt.Errorf("ldapsync: remove child group from %s: %w", g.dn, err)
				}
			}
			if !memberOps {
				return nil
			}
			// The members were read outside this transaction: another
			// writer's change since then moved the version too, so the
			// version after these writes alone says nothing. The members
			// are read again here, between two reads of the version.
			v, ok, err := r.membersAre(ctx, w, id, want)
			if err != nil {
				return fmt.Errorf("ldapsync: group %s: %w", g.dn, err)
			}
			if !ok {
				return nil // another writer changed them: no fingerprint, read next time
			}
			return r.putGroupFingerprints(ctx, w, []store.GroupFingerprint{{Key: g.key, GroupID: id, Digest: digests[i], GroupVersion: v}})
		})
		if len(addC) > 0 {
			// Added after every removal so that a moved edge never makes a
			// transient cycle.
			childAdds = append(childAdds, func(ctx context.Context, w writer) error {
				for _, c := range addC {
					if err := w.AddGroupChild(ctx, gid[i], c); err != nil {
						return fmt.Errorf("ldapsync: add child group to %s: %w", g.dn, err)
					}
				}
				return nil
			})
		}
		kind := "members"
		if nested {
			kind = "members (nested resolved)"
		}
		items = append(items, r.item("updated", "group", id, fmt.Sprintf("entry %s: %s +%d -%d, child groups +%d -%d",
			g.dn, kind, len(add), len(rem), len(addC), len(remC))))
		r.res.Counts["members_added"] += int64(len(add))
		r.res.Counts["members_removed"] += int64(len(rem))
		pendingChanges += len(add) + len(rem) + 1
		if pendingChanges >= 5000 {
			if err := flush(); err != nil {
				return err
			}
			pendingChanges = 0
		}
	}
	if err := flush(); err != nil {
		return err
	}
	ops = childAdds
	if err := flush(); err != nil {
		return err
	}

	if !gone {
		return nil
	}
	live := make(map[string]bool, len(groups))
	for _, g := range groups {
		live[g.key] = true
	}
	keys := make([]string, 0)
	for k, g := range r.groups {
		if !live[k] && g.DeletedAt == nil {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		g := r.groups[k]
		ops = append(ops, func(ctx context.Context, w writer) error {
			if err := w.DeleteGroup(ctx, g.ID); err != nil {
				return fmt.Errorf("ldapsync: remove group %s: %w", g.DN, err)
			}
			return nil
		})
		items = append(items, r.item("gone", "group", g.ID, fmt.Sprintf("entry %s is not in a complete full sync: group removed (soft)", g.DN)))
		r.res.Counts["groups_gone"]++
	}
	return flush()
}

// storedGraph reads the stored members of the given groups (one bulk
// read when there are many, else a query per group) and every live group's
// child groups (one query). It runs after pass 1, so new groups have none.
// Read outside the write transactions: a membership another writer changes
// meanwhile is diffed again on the next sync (AddMembers and RemoveMembers
// are idempotent, and the change moves the group's version).
func (r *run) storedGraph(ctx context.Context, groups map[string]bool) (members, children map[string][]string, err error) {
	members = map[string][]string{}
	if len(groups) > bulkMemberRead {
		err = r.s.st.ListSourceMemberships(ctx, r.s.source, func(m store.GroupMembership) error {
			if groups[m.GroupID] {
				members[m.GroupID] = append(members[m.GroupID], m.UserID)
			}
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("ldapsync: list members: %w", err)
		}
	} else {
		for id := range groups {
			if members[id], err = r.members(ctx, id); err != nil {
				return nil, nil, err
			}
		}
	}
	edges, err := r.s.st.ListGroupEdges(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("ldapsync: list child groups: %w", err)
	}
	ours := map[string]bool{}
	for _, g := range r.groups {
		if g.DeletedAt == nil {
			ours[g.ID] = true
		}
	}
	children = map[string][]string{}
	for _, e := range edges {
		if ours[e.ParentID] {
			children[e.ParentID] = append(children[e.ParentID], e.ChildID)
		}
	}
	return members, children, nil
}

// membersAre reports, in w's transaction, whether group id's members are
// want (without users not created) and at which version: the version read
// before and after the members, equal, so that no member write committed
// in between (every member write moves the version in its transaction).
func (r *run) membersAre(ctx context.Context, w writer, id string, want map[string]bool) (int64, bool, error) {
	before, err := w.GetGroup(ctx, id)
	if err != nil {
		return 0, false, fmt.Errorf("read group: %w", err)
	}
	n := 0
	for x := range want {
		if !strings.HasPrefix(x, "new:") {
			n++
		}
	}
	have, err := listMembers(ctx, w, id)
	if err != nil {
		return 0, false, err
	}
	same := len(have) == n
	for _, x := range have {
		if !want[x] {
			same = false
		}
	}
	cur, err := w.GetGroup(ctx, id)
	if err != nil {
		return 0, false, fmt.Errorf("read group: %w", err)
	}
	return before.Version, same && cur.Version == before.Version && cur.DeletedAt == nil, nil
}

// bulkMemberRead: more groups to read than this are read in one query.
const bulkMemberRead = 50

// members lists a stored group's members.
func (r *run) members(ctx context.Context, id string) ([]string, error) {
	return listMembers(ctx, r.s.st, id)
}

// memberLister pages a group's members: the store, or a transaction.
type memberLister interface {
	ListGroupMembers(ctx context.Context, groupID, after string, limit int) ([]string, error)
}

// listMembers lists a group's members through l.
func listMembers(ctx context.Context, l memberLister, id string) ([]string, error) {
	var out []string
	after := ""
	for {
		p, err := l.ListGroupMembers(ctx, id, after, 10000)
		if err != nil {
			return nil, fmt.Errorf("ldapsync: list members of %s: %w", id, err)
		}
		out = append(out, p...)
		if len(p) < 10000 {
			return out, nil
		}
		after = p[len(p)-1]
	}
}

// groupFingerprints returns the source's group fingerprints by group key.
func (r *run) groupFingerprints(ctx context.Context) (map[string]store.GroupFingerprint, error) {
	fs, err := r.s.st.ListGroupFingerprints(ctx, r.s.source)
	if err != nil {
		return nil, fmt.Errorf("ldapsync: list group fingerprints: %w", err)
	}
	out := make(map[string]store.GroupFingerprint, len(fs))
	for _, f := range fs {
		out[f.Key] = f
	}
	return out, nil
}

// memberDigest hashes a group's user ids as written: ids sorted and
// unique (so the order they were read in does not matter), without users
// not created.
func memberDigest(ids []string) string {
	h := sha256.New()
	for _, id := range ids {
		if strings.HasPrefix(id, "new:") {
			continue
		}
		h.Write([]byte(id))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// diff returns want−have and have−want, sorted.
func diff(want map[string]bool, have []string) (add, rem []string) {
	h := make(map[string]bool, len(have))
	for _, x := range have {
		h[x] = true
		if !want[x] {
			rem = append(rem, x)
		}
	}
	for x := range want {
		if !h[x] {
			add = append(add, x)
		}
	}
	sort.Strings(add)
	sort.Strings(rem)
	return add, rem
}
