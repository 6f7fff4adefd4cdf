package ldapsync

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"time"

	"github.com/go-ldap/ldap/v3"
	"go.uber.org/zap"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// run is the state of one sync run.
type run struct {
	s      *Syncer
	m      *mapper
	dry    bool
	ownRun bool // ldapsync records the run (no scheduler run id given)
	res    *Result
	meta   audit.Meta
	log    *zap.Logger
	conn   Conn
	prev   cursor
	seq    int64

	maxChange change
	usersSeen int
	liveLinks int
	keyless   int // entries read without a stable id

	// prefetched store state (full runs; incremental runs query instead)
	fetched      bool
	snap         *snapshotState           // the prefetch's state, for the next full run (snapshot.go)
	links        map[string]*linkInfo     // link key → link
	linkedUser   map[string]*linkInfo     // user id → its live link from this source
	users        map[string]*userInfo     // user id → managed-field digest (bulk read: many stale fingerprints)
	namesLoaded  bool                     // byEmail and byName hold the store's users (loadUsers)
	pointLookups int                      // e-mail and userName look-ups by query (namesLoaded false)
	fps          []store.Fingerprint      // user fingerprints for the current batch's commit
	gfps         []store.GroupFingerprint // group fingerprints for the next commit
	fpSalt       []byte                   // the source's mapping, hashed into each fingerprint
	byEmail      map[string]string        // lower e-mail → user id
	byName       map[string]string        // lower userName → user id
	seen         map[string]bool          // keys seen in this run
	pending      map[string]string        // "attr\x00lower value" → key of a user created in this run
	creates      []pendingCreate          // new users of the current batch
	// prefetchWait reports whether the prefetch running beside the user
	// read (full runs) is done, waiting for it with block.
	prefetchWait func(block bool) (bool, error)
	backlog      [][]ldapUser // batches of users read before the prefetch was done
	backlogLen   int          // users in backlog

	// membership index: users of this run (full) or of live links (incremental)
	dnIdx   map[string]int32
	nameIdx map[string]int32
	ids     []string

	groups     map[string]directory.Group // this source's stored groups by key
	groupNames map[string]string          // lower displayName → key
}

// op is one planned write.
type op func(ctx context.Context, w writer) error

// syncUsers pages through the users matching filter under every base DN
// and writes creates and updates in batches (never removals).
func (r *run) syncUsers(ctx context.Context, filter string) error {
	n := 0
	if r.res.Mode == ModeFull {
		n = r.sizeHint() // an incremental run sees a few entries
	}
	if r.seen == nil {
		r.seen = make(map[string]bool, n)
	}
	r.dnIdx, r.nameIdx, r.ids = make(map[string]int32, n), map[string]int32{}, make([]string, 0, n)
	attrs := r.m.userAttrs()
	page := 0
	for _, base := range r.s.src.UserBaseDNs {
		err := pagedSearch(ctx, r.conn, base, filter, attrs, r.s.src.PageSize, timeLimit(r.s.src.RequestTimeout),
			func(entries []*ldap.Entry) error {
				for start := 0; start < len(entries); start += r.s.src.BatchSize {
					end := min(start+r.s.src.BatchSize, len(entries))
					if err := r.userBatch(ctx, entries[start:end]); err != nil {
						return err
					}
				}
				if r.s.opts.afterPage != nil {
					r.s.opts.afterPage("users", page)
				}
				page++
				return nil
			})
		if err != nil {
			return err
		}
	}
	return nil
}

func timeLimit(d time.Duration) int { return int(d.Seconds()) }

// maxBacklog bounds the users held while the prefetch runs (about 300
// bytes each: 30 MB at most); past it the read waits.
const maxBacklog = 100000

func (r *run) userBatch(ctx context.Context, entries []*ldap.Entry) error {
	users := make([]ldapUser, len(entries))
	for i, e := range entries {
		users[i] = r.m.user(e)
	}
	if r.prefetchWait != nil {
		done, err := r.prefetchWait(r.backlogLen+len(users) > maxBacklog)
		if err != nil {
			return err
		}
		if !done {
			// Kept as the batches they came in: appending to one slice
			// copied every user again at each growth (0.2 s of CPU in a
			// 100,000-user no-change sync, against the LDAP read's core).
			r.backlog = append(r.backlog, users)
			r.backlogLen += len(users)
			return nil
		}
		if err := r.drainBacklog(ctx); err != nil {
			return err
		}
	}
	return r.planBatch(ctx, users)
}

// drainBacklog plans and writes the users read while the prefetch ran.
func (r *run) drainBacklog(ctx context.Context) error {
	batches := r.backlog
	r.backlog, r.backlogLen = nil, 0
	for i, b := range batches {
		batches[i] = nil // planned: let it go
		if err := r.planBatch(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

// planBatch plans a batch of users and writes it in one transaction.
func (r *run) planBatch(ctx context.Context, users []ldapUser) error {
	var ops []op
	var items []directory.RunItem
	for _, u := range users {
		r.usersSeen++
		if r.m.ad {
			if u.Change.usn > r.maxChange.usn {
				r.maxChange.usn = u.Change.usn
			}
		} else if u.Change.modTime > r.maxChange.modTime {
			r.maxChange.modTime = u.Change.modTime
		}
		if u.Err != "" {
			items = append(items, r.item("failed", "user", u.DN, "entry "+u.DN+": "+u.Err))
			r.res.Counts["failed"]++
			if u.Key != "" {
				r.seen[u.Key] = true // present in the source: never gone for a bad attribute
				if l := r.links[u.Key]; r.fetched && l != nil && !l.gone {
					r.index(u, l.userID) // nor out of its groups
				}
			} else {
				r.keyless++ // some link may be this entry: nothing can be called gone
			}
			continue
		}
		if r.seen[u.Key] {
			continue // the same entry under two base DNs
		}
		r.seen[u.Key] = true
		o, it, err := r.planUser(ctx, u)
		if err != nil {
			return err
		}
		ops = append(ops, o...)
		items = append(items, it...)
	}
	if len(r.creates) > 0 {
		ops = append(ops, r.createOp(r.creates))
		r.creates = nil
	}
	return r.commit(ctx, ops, items)
}

// commit applies ops and records items in one transaction; a dry run only
// collects the items.
func (r *run) commit(ctx context.Context, ops []op, items []directory.RunItem) error {
	fps, gfps := r.fps, r.gfps
	r.fps, r.gfps = nil, nil
	if r.dry {
		r.res.Items = append(r.res.Items, items...)
		return nil
	}
	if len(ops) == 0 && len(items) == 0 && len(fps) == 0 && len(gfps) == 0 {
		return nil
	}
	err := r.s.st.Update(ctx, r.meta, func(ctx context.Context, tx store.Tx) error {
		for _, o := range ops {
			if err := o(ctx, tx); err != nil {
				return err
			}
		}
		if err := r.putFingerprints(ctx, tx, fps); err != nil {
			return err
		}
		if err := r.putGroupFingerprints(ctx, tx, gfps); err != nil {
			return err
		}
		if len(items) > 0 {
			return tx.AddRunItems(ctx, items)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ldapsync: write batch: %w", err)
	}
	return nil
}

// planUser decides what one entry means for the store.
func (r *run) planUser(ctx context.Context, u ldapUser) ([]op, []directory.RunItem, error) {
	src := r.s.source
	link, err := r.linkFor(ctx, u.Key)
	if err != nil {
		return nil, nil, err
	}
	var ops []op
	var reasons []string
	userID := ""
	correlated := ""
	if link != nil {
		userID = link.userID
		if link.gone {
			reasons = append(reasons, "back in the source")
		}
		if link.dn != "" && link.dn != u.DN && !strings.EqualFold(normDN(link.dn), normDN(u.DN)) {
			reasons = append(reasons, fmt.Sprintf("renamed from %s", link.dn))
		}
	} else {
		// Correlate: stable-id link first (none), then the configured rules.
		matches := map[string][]string{}
		var order []string
		for _, rule := range r.s.src.Correlate {
			v := u.F.Email
			if rule == "userName" {
				v = u.F.UserName
			}
			id, err := r.userIDBy(ctx, rule, v)
			if err != nil {
				return nil, nil, err
			}
			if id == "" {
				continue
			}
			if _, ok := matches[id]; !ok {
				order = append(order, id)
			}
			matches[id] = append(matches[id], rule)
		}
		if len(order) > 1 {
			var parts []string
			for _, id := range order {
				parts = append(parts, fmt.Sprintf("%s matches user %s", strings.Join(matches[id], "+"), id))
			}
			r.res.Counts["disputed"]++
			return nil, []directory.RunItem{r.item("disputed", "user", u.DN,
				fmt.Sprintf("entry %s: correlation matched several users: %s", u.DN, strings.Join(parts, "; ")))}, nil
		}
		if len(order) == 1 {
			userID = order[0]
			if strings.HasPrefix(userID, "new:") {
				r.res.Counts["failed"]++
				return nil, []directory.RunItem{r.item("failed", "user", u.DN, fmt.Sprintf(
					"entry %s: same %s as entry %s, created in this run", u.DN, strings.Join(matches[userID], "+"),
					strings.TrimPrefix(userID, "new:")))}, nil
			}
			other, err := r.liveKeyOf(ctx, userID)
			if err != nil {
				return nil, nil, err
			}
			if other != "" && other != u.Key {
				r.res.Counts["disputed"]++
				return nil, []directory.RunItem{r.item("disputed", "user", userID,
					fmt.Sprintf("entry %s: %s matches user %s, already linked to another entry of this source (%s)",
						u.DN, strings.Join(matches[userID], "+"), userID, other))}, nil
			}
			correlated = strings.Join(matches[userID], "+")
			reasons = append(reasons, "correlated by "+correlated)
		}
	}

	if userID == "" {
		return r.planCreate(ctx, u)
	}

	// Existing user: compare managed fields (unless a fingerprint or the
	// bulk read says they are the entry's already).
	var changed []string
	if link == nil || link.userID != userID || !r.unchanged(u, link) {
		cur, err := r.s.st.GetUser(ctx, userID)
		if err != nil {
			return nil, nil, fmt.Errorf("ldapsync: read user %s: %w", userID, err)
		}
		if cur.DeletedAt != nil {
			r.res.Counts["failed"]++
			return nil, []directory.RunItem{r.item("failed", "user", userID,
				fmt.Sprintf("entry %s: linked user %s is deleted in dirsyncd", u.DN, userID))}, nil
		}
		changed = r.m.apply(&cur, u.F)
		if conflict, err := r.conflicts(ctx, userID, cur, changed); err != nil {
			return nil, nil, err
		} else if conflict != "" {
			if link != nil && !link.gone {
				r.index(u, userID) // still linked and in the source: its memberships stay
			}
			r.res.Counts["failed"]++
			return nil, []directory.RunItem{r.item("failed", "user", userID, fmt.Sprintf("entry %s: %s", u.DN, conflict))}, nil
		}
		if len(changed) == 0 {
			r.queueFingerprint(r.fingerprint(u.Key, userID, u.F, cur.Version))
		}
	}
	if link == nil || link.gone || link.dn != u.DN {
		l := directory.SourceLink{UserID: userID, Source: src, Key: u.Key, DN: u.DN, LastSeenAt: r.s.now()}
		ops = append(ops, func(ctx context.Context, w writer) error {
			if err := w.PutLink(ctx, l); err != nil {
				return fmt.Errorf("ldapsync: link %s: %w", u.DN, err)
			}
			return nil
		})
		if r.fetched {
			li := &linkInfo{key: u.Key, userID: userID, dn: u.DN}
			r.links[u.Key], r.linkedUser[userID] = li, li
		}
	}
	if len(changed) > 0 {
		f := u.F
		ops = append(ops, func(ctx context.Context, w writer) error {
			// The user is read without a lock: the update expects the
			// version read, so a change another writer commits in between
			// (to a field this source does not manage) is read and kept,
			// not overwritten.
			for attempt := 1; ; attempt++ {
				cur, err := w.GetUser(ctx, userID)
				if err != nil {
					return fmt.Errorf("ldapsync: read user %s: %w", userID, err)
				}
				if len(r.m.apply(&cur, f)) > 0 {
					err := w.UpdateUser(ctx, &cur, cur.Version)
					if errors.Is(err, store.ErrVersionMismatch) && attempt < 5 {
						continue
					}
					if err != nil {
						return fmt.Errorf("ldapsync: update user %s: %w", userID, err)
					}
				}
				return r.putFingerprints(ctx, w, []store.Fingerprint{r.fingerprint(u.Key, userID, f, cur.Version)})
			}
		})
		reasons = append(reasons, "changed: "+strings.Join(changed, ", "))
		r.trackFields(userID, u.F)
	}
	r.index(u, userID)
	if len(ops) == 0 {
		r.res.Counts["unchanged"]++
		return nil, nil, nil
	}
	r.res.Counts["updated"]++
	return ops, []directory.RunItem{r.item("updated", "user", userID, fmt.Sprintf("entry %s: %s", u.DN, strings.Join(reasons, "; ")))}, nil
}

// conflicts reports a userName or e-mail the update would take from another user.
func (r *run) conflicts(ctx context.Context, userID string, u directory.User, changed []string) (string, error) {
	for _, c := range changed {
		var attr, v string
		switch c {
		case "userName":
			attr, v = "userName", u.UserName
		case "email":
			attr, v = "email", u.Email
		default:
			continue
		}
		id, err := r.userIDBy(ctx, attr, v)
		if err != nil {
			return "", err
		}
		if id != "" && id != userID {
			return fmt.Sprintf("%s %q is already used by user %s", attr, v, id), nil
		}
	}
	return "", nil
}

func (r *run) trackFields(id string, f fields) {
	if !r.fetched {
		return
	}
	if f.Email != "" {
		r.byEmail[lower(f.Email)] = id
	}
	r.byName[lower(f.UserName)] = id
}

func (r *run) planCreate(ctx context.Context, u ldapUser) ([]op, []directory.RunItem, error) {
	// Correlation found nobody; make sure the new user does not collide.
	for _, c := range []struct{ attr, v string }{{"userName", u.F.UserName}, {"email", u.F.Email}} {
		id, err := r.userIDBy(ctx, c.attr, c.v)
		if err != nil {
			return nil, nil, err
		}
		if id != "" {
			r.res.Counts["failed"]++
			return nil, []directory.RunItem{r.item("failed", "user", u.DN, fmt.Sprintf(
				"entry %s: %s %q is already used by user %s (not a correlation rule)", u.DN, c.attr, c.v, id))}, nil
		}
	}
	nu := directory.User{Active: true}
	r.m.apply(&nu, u.F)
	if r.m.ad {
		nu.Active = u.F.Active
	}
	it := r.item("created", "user", u.DN, fmt.Sprintf("entry %s: new user %s", u.DN, u.F.UserName))
	r.res.Counts["created"]++
	idx := r.index(u, "new:"+u.Key)
	if r.pending == nil {
		r.pending = map[string]string{}
	}
	r.pending["userName\x00"+lower(u.F.UserName)] = u.Key
	if u.F.Email != "" {
		r.pending["email\x00"+lower(u.F.Email)] = u.Key
	}
	r.creates = append(r.creates, pendingCreate{u: &nu, e: u, idx: idx})
	return nil, []directory.RunItem{it}, nil
}

// pendingCreate is a user to create in the current batch.
type pendingCreate struct {
	u   *directory.User
	e   ldapUser
	idx int32
}

// createOp creates the batch's new users in bulk and links them.
func (r *run) createOp(creates []pendingCreate) op {
	src, now := r.s.source, r.s.now()
	return func(ctx context.Context, w writer) error {
		users := make([]*directory.User, len(creates))
		for i, c := range creates {
			users[i] = c.u
		}
		if _, _, err := w.UpsertUsers(ctx, users); err != nil {
			return fmt.Errorf("ldapsync: create %d users: %w", len(users), err)
		}
		links := make([]directory.SourceLink, len(creates))
		for i, c := range creates {
			links[i] = directory.SourceLink{UserID: c.u.ID, Source: src, Key: c.e.Key, DN: c.e.DN, LastSeenAt: now}
		}
		if b, ok := w.(bulkLinker); ok { // one locked read and one COPY per batch, not 2 statements per user
			if _, err := b.PutLinks(ctx, links); err != nil {
				return fmt.Errorf("ldapsync: link %d new users: %w", len(links), err)
			}
		} else {
			for i, l := range links {
				if err := w.PutLink(ctx, l); err != nil {
					return fmt.Errorf("ldapsync: link %s: %w", creates[i].e.DN, err)
				}
			}
		}
		fps := make([]store.Fingerprint, len(creates))
		for i, c := range creates {
			fps[i] = r.fingerprint(c.e.Key, c.u.ID, c.e.F, c.u.Version)
		}
		if err := r.putFingerprints(ctx, w, fps); err != nil {
			return err
		}
		for _, c := range creates {
			r.ids[c.idx] = c.u.ID
			r.trackFields(c.u.ID, c.e.F)
			if r.fetched {
				li := &linkInfo{key: c.e.Key, userID: c.u.ID, dn: c.e.DN}
				r.links[c.e.Key], r.linkedUser[c.u.ID] = li, li
			}
		}
		return nil
	}
}

// index records a user of this run for membership resolution.
func (r *run) index(u ldapUser, id string) int32 {
	i := int32(len(r.ids))
	r.ids = append(r.ids, id)
	r.dnIdx[normDN(u.DN)] = i
	if r.s.src.MemberAttribute == "memberUid" && u.F.UserName != "" { // only memberUid values are userNames
		r.nameIdx[lower(u.F.UserName)] = i
	}
	return i
}

// indexFromLinks builds the membership index from the store's live links
// (incremental runs, where not every user was read).
func (r *run) indexFromLinks(ctx context.Context) error {
	n := r.sizeHint()
	r.dnIdx, r.nameIdx, r.ids = make(map[string]int32, n), map[string]int32{}, make([]string, 0, n)
	// A user deleted in dirsyncd keeps its live link while its entry is in
	// the directory, but can be no member (the store refuses it): as in a
	// full run (planUser), it is left out of the index.
	deleted := map[string]bool{}
	if err := r.s.st.ListUserVersions(ctx, func(v store.UserVersion) error {
		if v.Deleted {
			deleted[v.ID] = true
		}
		return nil
	}); err != nil {
		return fmt.Errorf("ldapsync: list user versions: %w", err)
	}
	names := map[string]string{}
	if r.s.src.MemberAttribute == "memberUid" {
		// memberUid holds userNames: index the linked users' names.
		for id := range r.linkedUser {
			if deleted[id] {
				continue
			}
			u, err := r.s.st.GetUser(ctx, id)
			if err != nil {
				return fmt.Errorf("ldapsync: read user %s: %w", id, err)
			}
			names[id] = u.UserName
		}
	}
	keys := make([]string, 0, len(r.links))
	for k := range r.links {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		l := r.links[k]
		if l.gone || deleted[l.userID] {
			continue
		}
		i := int32(len(r.ids))
		r.ids = append(r.ids, l.userID)
		r.dnIdx[normDN(l.dn)] = i
		if n := names[l.userID]; n != "" {
			r.nameIdx[lower(n)] = i
		}
	}
	return nil
}

// dropUserLookups releases, once the users of a full run are planned, what
// only the user phase needs: the digests and the e-mail, userName and
// pending-create lookups (about half of the run's per-user maps; the group
// phase that follows is the run's memory peak, and its read, started beside
// the planning, holds at most groupReadAhead member values until then).
// The links and the seen keys stay for markGone, the DN index for the
// group phase.
func (r *run) dropUserLookups() {
	r.users, r.byEmail, r.byName, r.pending, r.linkedUser = nil, nil, nil, nil, nil
}

// markGone marks the links of users missing from a complete full read.
func (r *run) markGone(ctx context.Context) error {
	var keys []string
	for k, l := range r.links {
		if !l.gone && !r.seen[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for start := 0; start < len(keys); start += r.s.src.BatchSize {
		end := min(start+r.s.src.BatchSize, len(keys))
		var ops []op
		var items []directory.RunItem
		for _, k := range keys[start:end] {
			l := r.links[k]
			key := k
			ops = append(ops, func(ctx context.Context, w writer) error {
				if err := w.MarkLinkGone(ctx, r.s.source, key); err != nil {
					return fmt.Errorf("ldapsync: mark gone %s: %w", l.dn, err)
				}
				return nil
			})
			items = append(items, r.item("gone", "user", l.userID,
				fmt.Sprintf("entry %s (%s) is not in a complete full sync: link marked gone, user kept", l.dn, key)))
			r.res.Counts["gone"]++
		}
		if err := r.commit(ctx, ops, items); err != nil {
			return err
		}
	}
	return nil
}
