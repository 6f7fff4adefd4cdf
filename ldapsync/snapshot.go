package ldapsync

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"go.uber.org/zap"

	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// The prefetch's state as one stored row (store.SyncSnapshot).
//
// A full run's prefetch otherwise scans the source's links, its
// fingerprints and every user's version: about 40% of the CPU of a full
// sync of an unchanged 100,000-user directory. The snapshot holds what those
// scans produce — per link its key, user, DN, whether it is gone, and
// whether its fingerprint was fresh (with digest and version) — as read
// after audit event AuditSeq. Every user and link write records an audit
// event of object type "user" naming the user, in the same transaction,
// and the chain head is held until commit, so the events after AuditSeq
// name every user whose links or version may have moved since. A run reads
// the snapshot, re-reads the links of those users (the links decide who an
// entry is: they are never taken on trust) and treats their fingerprints
// as stale (the run then compares those users with the entry, as without a
// snapshot). Too many such users (snapshotPatchMax), an unreadable
// snapshot or one ahead of the audit log (a restored database) and the run
// scans instead.
//
// At the end of a successful full run the snapshot is brought up to date:
// the users named by the events after the prefetch's sequence number (the
// run's own writes, anyone else's) and those the prefetch found changed are
// read again — links, fingerprint, version — and the result stored; with
// more than snapshotPatchMax of them (a first full sync) it is rebuilt by
// the scans. A run that found nothing changed and changed nothing writes
// no snapshot (a no-change full sync writes nothing). Dry runs never write
// one; incremental runs read it (to rebuild memberships) and leave it.

// snapshotPatchMax is how many changed users a snapshot is patched for;
// beyond it the state is scanned. A variable for tests.
var snapshotPatchMax = 2000

// snapshotFormat is the encoding's version byte: a snapshot of another
// format is not read (the run scans and stores a new one).
const snapshotFormat = 1

const (
	snapGone  = 1 << 0
	snapFresh = 1 << 1
)

// snapshotState is the prefetch's state as of audit event seq: the links
// in it are never changed after the prefetch (the run installs new ones).
type snapshotState struct {
	seq     int64
	links   []*linkInfo
	stale   []string // users the prefetch found changed since the stored snapshot
	changed bool     // differs from the stored snapshot (or there is none)
	// fpUsers: users whose fingerprint the run wrote (not audited: a
	// fingerprint renewed for an unchanged user has no event), up to
	// snapshotPatchMax; fpMany says there were more.
	fpUsers []string
	fpMany  bool
}

func (s *snapshotState) noteFingerprint(userID string) {
	if len(s.fpUsers) >= snapshotPatchMax {
		s.fpMany = true
		return
	}
	s.fpUsers = append(s.fpUsers, userID)
}

// encodeSnapshot writes links: format byte, count, then per link flags,
// key, user id, DN (length-prefixed) and, when fresh, digest and version.
func encodeSnapshot(links []*linkInfo) []byte {
	n := 16
	for _, l := range links {
		n += 3*binary.MaxVarintLen32 + len(l.key) + len(l.userID) + len(l.dn) + 1 + len(digest{}) + binary.MaxVarintLen64
	}
	b := make([]byte, 0, n)
	b = append(b, snapshotFormat)
	b = binary.AppendUvarint(b, uint64(len(links)))
	for _, l := range links {
		var f byte
		if l.gone {
			f |= snapGone
		}
		if l.fresh {
			f |= snapFresh
		}
		b = append(b, f)
		for _, s := range []string{l.key, l.userID, l.dn} {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
		if l.fresh {
			b = append(b, l.fp[:]...)
			b = binary.AppendUvarint(b, uint64(l.fpVersion))
		}
	}
	return b
}

var errSnapshot = errors.New("malformed sync snapshot")

// decodeSnapshot reads encodeSnapshot's bytes; every string shares one copy
// of data.
func decodeSnapshot(data []byte) ([]linkInfo, error) {
	if len(data) == 0 || data[0] != snapshotFormat {
		return nil, fmt.Errorf("%w: not format %d", errSnapshot, snapshotFormat)
	}
	s := string(data[1:])
	p := 0
	uvarint := func() (uint64, error) {
		v, k := binary.Uvarint([]byte(s[p:min(len(s), p+binary.MaxVarintLen64)]))
		if k <= 0 {
			return 0, fmt.Errorf("%w: bad number at byte %d", errSnapshot, p+1)
		}
		p += k
		return v, nil
	}
	str := func() (string, error) {
		n, err := uvarint()
		if err != nil {
			return "", err
		}
		if n > uint64(len(s)-p) {
			return "", fmt.Errorf("%w: string of %d bytes at byte %d runs past the end", errSnapshot, n, p+1)
		}
		v := s[p : p+int(n)]
		p += int(n)
		return v, nil
	}
	count, err := uvarint()
	if err != nil {
		return nil, err
	}
	if count > uint64(len(s)) { // every link takes at least four bytes
		return nil, fmt.Errorf("%w: %d links in %d bytes", errSnapshot, count, len(data))
	}
	out := make([]linkInfo, count)
	for i := range out {
		if p >= len(s) {
			return nil, fmt.Errorf("%w: ends after %d of %d links", errSnapshot, i, count)
		}
		f := s[p]
		p++
		if f&^(snapGone|snapFresh) != 0 {
			return nil, fmt.Errorf("%w: unknown flags %#x", errSnapshot, f)
		}
		l := &out[i]
		l.gone = f&snapGone != 0
		if l.key, err = str(); err != nil {
			return nil, err
		}
		if l.userID, err = str(); err != nil {
			return nil, err
		}
		if l.dn, err = str(); err != nil {
			return nil, err
		}
		if l.key == "" || l.userID == "" {
			return nil, fmt.Errorf("%w: link %d has no key or user", errSnapshot, i)
		}
		if f&snapFresh != 0 {
			if len(s)-p < len(l.fp) {
				return nil, fmt.Errorf("%w: digest of link %d runs past the end", errSnapshot, i)
			}
			copy(l.fp[:], s[p:])
			p += len(l.fp)
			v, err := uvarint()
			if err != nil {
				return nil, err
			}
			if v == 0 || v > 1<<62 {
				return nil, fmt.Errorf("%w: link %d: version %d", errSnapshot, i, v)
			}
			l.fpVersion, l.fresh = int64(v), true
		}
	}
	if p != len(s) {
		return nil, fmt.Errorf("%w: %d bytes after the last link", errSnapshot, len(s)-p)
	}
	return out, nil
}

// claim makes l its user's link in byUser unless the user already has one
// first by key: of two live links to one user (the schema does not forbid
// it) the first by key is the user's, and only its fingerprint counts.
func claim(byUser map[string]*linkInfo, l *linkInfo) {
	if cur := byUser[l.userID]; !l.gone && (cur == nil || l.key < cur.key) {
		byUser[l.userID] = l
	}
}

// install makes links the run's prefetched links (r.links, r.linkedUser).
func (r *run) install(links []*linkInfo) {
	for _, l := range links {
		r.links[l.key] = l
		claim(r.linkedUser, l)
	}
}

// countLinks sets r.liveLinks and returns how many users' links have a
// fresh fingerprint.
func (r *run) countLinks() (fresh int) {
	r.liveLinks = 0
	for _, l := range r.links {
		if !l.gone {
			r.liveLinks++
		}
	}
	for _, l := range r.linkedUser {
		if l.fresh {
			fresh++
		}
	}
	return fresh
}

// scanState reads the source's links, fingerprints and the users' versions
// (three streamed scans) into links and the maps byKey and byUser (as
// install fills them): the state as of audit event seq, read before them.
func (r *run) scanState(ctx context.Context, byKey, byUser map[string]*linkInfo) (seq int64, links []*linkInfo, err error) {
	if seq, err = r.s.st.LastAuditSeq(ctx); err != nil {
		return 0, nil, fmt.Errorf("ldapsync: read the audit sequence: %w", err)
	}
	links = make([]*linkInfo, 0, r.sizeHint())
	var slab linkSlab
	err = r.s.st.ScanLinks(ctx, r.s.source, func(l directory.SourceLink) error {
		li := slab.new(linkInfo{key: l.Key, userID: l.UserID, dn: l.DN, gone: l.GoneAt != nil})
		byKey[l.Key] = li
		links = append(links, li)
		claim(byUser, li)
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("ldapsync: list links: %w", err)
	}
	// Fingerprints by key, then the users' versions: a fingerprint is
	// fresh while its link's user is still at its version, not deleted.
	withFP := 0
	err = r.s.st.ListFingerprints(ctx, r.s.source, func(f store.Fingerprint) error {
		l := byKey[f.Key]
		if l == nil || l.gone || l.userID != f.UserID || f.UserVersion <= 0 || byUser[f.UserID] != l {
			return nil
		}
		if d, ok := parseDigest(f.Digest); ok {
			l.fp, l.fpVersion = d, f.UserVersion
			withFP++
		}
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("ldapsync: list fingerprints: %w", err)
	}
	if withFP > 0 {
		err = r.s.st.ListUserVersions(ctx, func(v store.UserVersion) error {
			if l := byUser[v.ID]; l != nil && l.fpVersion > 0 && !v.Deleted && v.Version == l.fpVersion {
				l.fresh = true
			}
			return nil
		})
		if err != nil {
			return 0, nil, fmt.Errorf("ldapsync: list user versions: %w", err)
		}
	}
	for _, l := range links {
		if !l.fresh {
			l.fp, l.fpVersion = digest{}, 0
		}
	}
	return seq, links, nil
}

// loadSnapshot reads the stored snapshot and brings it to the audit
// sequence number read now, re-reading the links of the users changed
// since (their fingerprints count as stale). ok is false when there is no
// usable snapshot; err only for a failed read.
func (r *run) loadSnapshot(ctx context.Context) (st *snapshotState, ok bool, err error) {
	snap, err := r.s.st.GetSyncSnapshot(ctx, r.s.source)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("ldapsync: read sync snapshot: %w", err)
	}
	now, err := r.s.st.LastAuditSeq(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("ldapsync: read the audit sequence: %w", err)
	}
	if snap.AuditSeq > now {
		r.log.Warn("sync snapshot is ahead of the audit log (a restored database?): scanning", zap.Int64("snapshot_seq", snap.AuditSeq), zap.Int64("audit_seq", now))
		return nil, false, nil
	}
	ids, complete, err := r.s.st.ListAuditUsersAfter(ctx, snap.AuditSeq, snapshotPatchMax)
	if err != nil {
		return nil, false, fmt.Errorf("ldapsync: read changes since the sync snapshot: %w", err)
	}
	if !complete {
		return nil, false, nil
	}
	decoded, err := decodeSnapshot(snap.Data)
	if err != nil {
		r.log.Warn("sync snapshot unreadable: scanning", zap.Error(err))
		return nil, false, nil
	}
	links := make([]*linkInfo, len(decoded))
	for i := range decoded {
		links[i] = &decoded[i]
	}
	links, err = r.patchLinks(ctx, links, ids, false)
	if err != nil {
		return nil, false, err
	}
	return &snapshotState{seq: now, links: links, stale: ids, changed: len(ids) > 0}, true, nil
}

// patchLinks replaces, in links, those of the users ids with the store's
// current ones; with freshness their fingerprints are read and checked
// against their users' versions, else they count as stale. links is not
// changed in place.
func (r *run) patchLinks(ctx context.Context, links []*linkInfo, ids []string, freshness bool) ([]*linkInfo, error) {
	if len(ids) == 0 {
		return links, nil
	}
	changed := make(map[string]bool, len(ids))
	for _, id := range ids {
		changed[id] = true
	}
	ls, err := r.s.st.ListLinksOfUsers(ctx, r.s.source, ids)
	if err != nil {
		return nil, fmt.Errorf("ldapsync: list links of %d changed users: %w", len(ids), err)
	}
	fresh := make([]*linkInfo, 0, len(ls))
	keys := make([]string, 0, len(ls))
	for _, l := range ls {
		fresh = append(fresh, &linkInfo{key: l.Key, userID: l.UserID, dn: l.DN, gone: l.GoneAt != nil})
		keys = append(keys, l.Key)
	}
	version := map[string]int64{}
	if freshness && len(keys) > 0 {
		vs, err := r.s.st.ListUserVersionsByID(ctx, ids)
		if err != nil {
			return nil, fmt.Errorf("ldapsync: read the versions of %d changed users: %w", len(ids), err)
		}
		for _, v := range vs {
			if !v.Deleted {
				version[v.ID] = v.Version
			}
		}
	}
	if freshness && len(keys) > 0 {
		fps, err := r.s.st.ListFingerprintsByKey(ctx, r.s.source, keys)
		if err != nil {
			return nil, fmt.Errorf("ldapsync: list fingerprints: %w", err)
		}
		byKey := make(map[string]*linkInfo, len(fresh))
		for _, l := range fresh {
			byKey[l.key] = l
		}
		for _, f := range fps {
			l := byKey[f.Key]
			if l == nil || l.gone || l.userID != f.UserID || f.UserVersion <= 0 || version[f.UserID] != f.UserVersion {
				continue
			}
			if d, ok := parseDigest(f.Digest); ok {
				l.fp, l.fpVersion, l.fresh = d, f.UserVersion, true
			}
		}
	}
	// A key read again wins over the old entry of that key (a link moved
	// to one of ids from another user).
	reread := make(map[string]bool, len(keys))
	for _, k := range keys {
		reread[k] = true
	}
	out := make([]*linkInfo, 0, len(links)+len(fresh))
	for _, l := range links {
		if !changed[l.userID] && !reread[l.key] {
			out = append(out, l)
		}
	}
	out = append(out, fresh...)
	// Of two live links to one user only the first by key may be fresh
	// (claim's rule): a second one read here must not be.
	first := map[string]*linkInfo{}
	for _, l := range out {
		if changed[l.userID] {
			claim(first, l)
		}
	}
	for i, l := range out {
		if l.fresh && changed[l.userID] && first[l.userID] != l {
			c := *l
			c.fresh, c.fp, c.fpVersion = false, digest{}, 0
			out[i] = &c
		}
	}
	return out, nil
}

// storeSnapshot brings the prefetch's state up to date after a successful
// full run and stores it (see the top of this file). A failure is logged:
// the snapshot is a cache, the run's writes are committed.
func (r *run) storeSnapshot(ctx context.Context) {
	if r.dry || r.snap == nil {
		return
	}
	err := func() error {
		now, err := r.s.st.LastAuditSeq(ctx)
		if err != nil {
			return fmt.Errorf("read the audit sequence: %w", err)
		}
		ids, complete, err := r.s.st.ListAuditUsersAfter(ctx, r.snap.seq, snapshotPatchMax)
		if err != nil {
			return fmt.Errorf("read changes since the prefetch: %w", err)
		}
		if complete && len(ids) == 0 && !r.snap.changed && len(r.snap.fpUsers) == 0 && !r.snap.fpMany {
			return nil // nothing moved: the stored snapshot holds
		}
		var links []*linkInfo
		all := append(append(slices.Clip(r.snap.stale), ids...), r.snap.fpUsers...)
		if complete && !r.snap.fpMany && len(all) <= snapshotPatchMax {
			slices.Sort(all)
			all = slices.Compact(all)
			if links, err = r.patchLinks(ctx, r.snap.links, all, true); err != nil {
				return err
			}
		} else if now, links, err = r.scanState(ctx, map[string]*linkInfo{}, map[string]*linkInfo{}); err != nil {
			return err
		}
		data := encodeSnapshot(links)
		return r.s.st.Update(ctx, r.meta, func(ctx context.Context, tx store.Tx) error {
			return tx.PutSyncSnapshot(ctx, r.s.source, store.SyncSnapshot{AuditSeq: now, Data: data})
		})
	}()
	if err != nil {
		r.log.Warn("sync snapshot not stored: the next full sync scans the store instead", zap.Error(err))
	}
}
