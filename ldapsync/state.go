package ldapsync

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/dirsyncd/dirsyncd/store"
)

// The store's state as a run sees it: prefetched for full runs (links,
// fingerprints, and only when needed the users), queried one at a time for
// incremental runs.
//
// Fingerprints (store.Fingerprint) make a full sync of an unchanged
// directory cheap: after each comparison the run records "entry K, whose
// mapped fields hash to D, matched user U at version V". The next full run
// reads the links, the fingerprints and the users' versions (one streamed
// query each, scanState; or their stored snapshot, snapshot.go) and, for an
// entry that still hashes to D while its user is still at version V, knows
// without reading the user that nothing changed: every user write bumps
// the version, whoever makes it (SCIM, an admin, another source). Any other
// entry is compared with the stored user as before. When many fingerprints
// are missing or stale (the first full sync after an upgrade, a mass change
// made elsewhere), the users are read in bulk instead of one by one
// (staleBulkRead). The e-mail and userName lookups that correlation needs
// are queried one by one (up to pointLookupMax), then read in bulk
// (loadUsers); an unchanged directory needs none.

type linkInfo struct {
	key, userID, dn string
	gone            bool
	fp              digest // the fingerprint's digest
	fpVersion       int64  // the user's version the fingerprint names (0: none)
	fresh           bool   // the fingerprint is of this link's user, still at its version
}

// linkSlab hands out linkInfos from chunks: one allocation per 1,024
// links rather than one each (100,000 links in a full run's prefetch).
type linkSlab []linkInfo

func (s *linkSlab) new(l linkInfo) *linkInfo {
	if len(*s) == cap(*s) {
		*s = make([]linkInfo, 0, 1024)
	}
	*s = append(*s, l)
	return &(*s)[len(*s)-1]
}

type userInfo struct {
	d       digest
	version int64
	deleted bool
}

// staleBulkRead: more live links than this (and than a tenth of them)
// without a fresh fingerprint make the prefetch read every user (one bulk
// read) rather than one user per entry.
var staleBulkRead = 1000 // a variable for tests

// pointLookupMax: after this many e-mail or userName look-ups by query (a
// run with many new or renamed users) the run reads every user instead.
const pointLookupMax = 500

// sizeHint is how many users the run's maps are sized for: the last
// successful full sync's count (capped, as it comes from a stored cursor),
// so that a 100,000-user run does not grow its maps from empty.
func (r *run) sizeHint() int {
	return int(min(max(r.prev.LastFullUsers, 0), 1<<20))
}

func (r *run) prefetch(ctx context.Context) error {
	if r.fetched {
		return nil
	}
	n := r.sizeHint()
	r.links, r.linkedUser = make(map[string]*linkInfo, n), make(map[string]*linkInfo, n)
	r.byEmail, r.byName = map[string]string{}, map[string]string{}
	r.users, r.namesLoaded = nil, false
	r.liveLinks = 0
	// The stored snapshot brought up to date (snapshot.go), else the scans.
	snap, ok, err := r.loadSnapshot(ctx)
	if err != nil {
		return err
	}
	if ok {
		r.install(snap.links)
	} else {
		seq, links, err := r.scanState(ctx, r.links, r.linkedUser)
		if err != nil {
			return err
		}
		snap = &snapshotState{seq: seq, links: links, changed: true}
	}
	r.snap = snap
	fresh := r.countLinks()
	if stale := r.liveLinks - fresh; stale > staleBulkRead && stale > r.liveLinks/10 {
		if err := r.loadUsers(ctx, true); err != nil {
			return err
		}
	}
	r.fetched = true
	return nil
}

// loadUsers reads every user for the e-mail and userName lookups and, with
// digests, each user's managed-field digest and version.
func (r *run) loadUsers(ctx context.Context, digests bool) error {
	if digests {
		r.users = map[string]*userInfo{}
	}
	q := store.UserQuery{SortBy: "id", Limit: 5000, IncludeDeleted: true}
	for {
		p, err := r.s.st.ListUsers(ctx, q)
		if err != nil {
			return fmt.Errorf("ldapsync: list users: %w", err)
		}
		for _, u := range p.Items {
			if digests {
				r.users[u.ID] = &userInfo{d: r.m.fieldsOf(u).digest(), version: u.Version, deleted: u.DeletedAt != nil}
			}
			if u.DeletedAt != nil {
				continue
			}
			// What this run already wrote (trackFields) is newer.
			if e := lower(u.Email); e != "" {
				if _, ok := r.byEmail[e]; !ok {
					r.byEmail[e] = u.ID
				}
			}
			if _, ok := r.byName[lower(u.UserName)]; !ok {
				r.byName[lower(u.UserName)] = u.ID
			}
		}
		if len(p.Items) < q.Limit {
			break
		}
		q.Filter = store.Cmp{Field: "id", Op: store.OpGt, Value: p.Items[len(p.Items)-1].ID}
	}
	r.namesLoaded = true
	return nil
}

// unchanged reports, without reading the user, that entry u's linked user
// already holds what u has; a digest that matched the bulk-read user is
// queued as a fingerprint.
func (r *run) unchanged(u ldapUser, link *linkInfo) bool {
	if !r.fetched || link == nil || link.gone {
		return false
	}
	d := r.fpDigest(u.F)
	if link.fresh && link.fp == d {
		return true
	}
	if ui := r.users[link.userID]; ui != nil && !ui.deleted && ui.d == u.F.digest() {
		r.queueFingerprint(r.fingerprint(u.Key, link.userID, u.F, ui.version))
		return true
	}
	return false
}

// fpDigest is the digest a fingerprint stores: the entry's mapped fields
// under this source's mapping (dialect and attribute map), so that a
// changed mapping never matches an old fingerprint.
func (r *run) fpDigest(f fields) digest {
	if r.fpSalt == nil {
		r.fpSalt = []byte(fmt.Sprintf("%s\x00%+v\x00", r.s.src.Dialect, r.s.src.Attributes))
	}
	return f.digestWith(r.fpSalt)
}

// queueFingerprint records f for the current batch's commit.
func (r *run) queueFingerprint(f store.Fingerprint) {
	if r.dry || f.UserVersion <= 0 {
		return
	}
	r.fps = append(r.fps, f)
}

// fingerprint is the record that entry key, with fields f, matched user
// userID at version v.
func (r *run) fingerprint(key, userID string, f fields, v int64) store.Fingerprint {
	d := r.fpDigest(f)
	return store.Fingerprint{Key: key, UserID: userID, Digest: hex.EncodeToString(d[:]), UserVersion: v}
}

// putFingerprints writes fingerprints in the caller's transaction (with a
// writer that cannot, nothing: they are a cache).
func (r *run) putFingerprints(ctx context.Context, w writer, fps []store.Fingerprint) error {
	if len(fps) == 0 {
		return nil
	}
	if err := w.PutFingerprints(ctx, r.s.source, fps); err != nil {
		return fmt.Errorf("ldapsync: record %d fingerprints: %w", len(fps), err)
	}
	if r.snap != nil { // the stored snapshot learns of them (storeSnapshot)
		for _, f := range fps {
			r.snap.noteFingerprint(f.UserID)
		}
	}
	return nil
}

// putGroupFingerprints is putFingerprints for group fingerprints.
func (r *run) putGroupFingerprints(ctx context.Context, w writer, fps []store.GroupFingerprint) error {
	if len(fps) == 0 {
		return nil
	}
	if err := w.PutGroupFingerprints(ctx, r.s.source, fps); err != nil {
		return fmt.Errorf("ldapsync: record %d group fingerprints: %w", len(fps), err)
	}
	return nil
}

func parseDigest(s string) (digest, bool) {
	var d digest
	if hex.DecodedLen(len(s)) != len(d) {
		return d, false
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return d, false
	}
	return d, true
}

// lookups: from the prefetch when there is one, else from the store.

func (r *run) linkFor(ctx context.Context, key string) (*linkInfo, error) {
	if r.fetched {
		return r.links[key], nil
	}
	u, err := r.s.st.FindUserByLink(ctx, r.s.source, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ldapsync: find link %q: %w", key, err)
	}
	ls, err := r.s.st.ListUserLinks(ctx, u.ID)
	if err != nil {
		return nil, fmt.Errorf("ldapsync: list links of %s: %w", u.ID, err)
	}
	for _, l := range ls {
		if l.Source == r.s.source && l.Key == key {
			return &linkInfo{key: key, userID: u.ID, dn: l.DN, gone: l.GoneAt != nil}, nil
		}
	}
	return &linkInfo{key: key, userID: u.ID}, nil
}

func (r *run) userIDBy(ctx context.Context, attr, v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if key, ok := r.pending[attr+"\x00"+lower(v)]; ok {
		return "new:" + key, nil
	}
	if r.fetched {
		m := r.byName
		if attr == "email" {
			m = r.byEmail
		}
		// What this run wrote comes first; then the bulk read, or (until
		// pointLookupMax of them) a query per value.
		if id, ok := m[lower(v)]; ok || r.namesLoaded {
			return id, nil
		}
		if r.pointLookups >= pointLookupMax {
			if err := r.loadUsers(ctx, false); err != nil {
				return "", err
			}
			return m[lower(v)], nil
		}
		r.pointLookups++
	}
	get := r.s.st.GetUserByUserName
	if attr == "email" {
		get = r.s.st.GetUserByEmail
	}
	u, err := get(ctx, v)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("ldapsync: find user by %s: %w", attr, err)
	}
	return u.ID, nil
}

// liveKeyOf returns the key of the user's live link from this source.
func (r *run) liveKeyOf(ctx context.Context, userID string) (string, error) {
	if r.fetched {
		if l := r.linkedUser[userID]; l != nil {
			return l.key, nil
		}
		return "", nil
	}
	ls, err := r.s.st.ListUserLinks(ctx, userID)
	if err != nil {
		return "", fmt.Errorf("ldapsync: list links of %s: %w", userID, err)
	}
	for _, l := range ls {
		if l.Source == r.s.source && l.GoneAt == nil {
			return l.Key, nil
		}
	}
	return "", nil
}
