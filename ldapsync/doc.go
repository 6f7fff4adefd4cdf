// Package ldapsync pulls users, groups and memberships from LDAP directories
// (OpenLDAP, Active Directory, generic) into the store.
//
// It owns: the LDAP client side (dial, StartTLS, bind, RFC 2696 paged search
// with the next page requested while the current one is processed, AD range
// retrieval of large member attributes, binary objectGUID), mapping entries
// to directory users and groups, correlation with existing users (stable-id
// link first, then e-mail and/or userName; several matches are "disputed"),
// the local group graph (nested membership resolved with cycle detection,
// no per-group server round trip), full and incremental runs with their
// cursors (OpenLDAP modifyTimestamp with an overlap window; AD uSNChanged
// with highestCommittedUSN and the DC's invocationId, a different DC forcing
// a full sync; deletions read from AD tombstones, tombstones.go), the safety
// rules, the run report and the dry-run plan.
//
// Safety: users are created and updated as pages stream in, but nothing is
// removed (links marked gone, memberships removed, groups deleted) until a
// full read finished without error, truncation or a missing stable id, and
// returned at least minFullFraction of the last successful full sync. A user
// missing from such a read keeps its record: only its link is marked gone.
// The cursor is stored only when a run succeeds. A search reference (part
// of the subtree on another server) aborts the run unless the source says
// referrals: ignore; references are never followed.
//
// Speed of the scheduled case, a full sync of an unchanged directory: the
// store's state is prefetched beside the user read (entries wait, mapped,
// in a backlog; the links in one streamed scan, store.Reader.ScanLinks),
// the groups are read beside the planning of the users still in the
// backlog (groupread.go: a reader goroutine with a bounded read-ahead; the
// run resolves members itself, so its index is never shared), and
// fingerprints (state.go) let the run skip reading a user or a group's
// members whose entry hashes as last time while the user or group is
// still at the version it had then. The prefetch itself reads one stored
// snapshot of that state (snapshot.go) and re-reads only the users the
// audit log names as changed since, instead of scanning every link,
// fingerprint and user version. Nothing of this changes what is written:
// only when it is computed.
//
// Files: sync.go (runs, cursor, modes), users.go (user phase), state.go
// (prefetch, fingerprints, look-ups), snapshot.go (the prefetch's stored
// snapshot), groupread.go (group read), groups.go
// and graph.go (group phase), entry.go (mapping), conn.go and wire.go
// (LDAP client, paged search).
//
// It talks to the store only through the Store interface declared here
// (a subset of store.Store), and to LDAP through Conn (tests replay
// recorded Active Directory responses through it).
package ldapsync
