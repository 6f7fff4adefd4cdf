package store

import (
	"context"
	"errors"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
)

// Sentinel errors; backends wrap them with the operation (errors.Is works).
var (
	ErrNotFound        = errors.New("not found")
	ErrConflict        = errors.New("conflict")         // a uniqueness rule would be broken
	ErrVersionMismatch = errors.New("version mismatch") // optimistic concurrency (ETag) failed
	ErrInvalidFilter   = errors.New("invalid filter")   // unknown attribute, operator or value type in a Filter/SortBy
)

// Store is dirsyncd's state. Reads may run outside a transaction; every
// write runs inside Update.
type Store interface {
	Reader
	// Update runs fn in one transaction. Every mutating Tx call records an
	// audit event stamped with m (actor, run id, request id) in the same
	// transaction. If fn or any audit write fails, nothing is committed.
	Update(ctx context.Context, m audit.Meta, fn func(ctx context.Context, tx Tx) error) error

	// Audit reads the audit log in sequence order, calling fn per event.
	Audit(ctx context.Context, f AuditFilter, fn func(audit.Event) error) error
	// VerifyAudit walks the whole chain and reports every problem found.
	VerifyAudit(ctx context.Context) (*audit.Verifier, error)

	// AcquireLease takes or renews the named lease for holder until now+ttl;
	// it returns false when another holder's lease has not expired. Lease
	// bookkeeping is not a domain change and is not audited.
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	// ReleaseLease gives the lease up if holder has it.
	ReleaseLease(ctx context.Context, name, holder string) error

	Migrate(ctx context.Context) error // apply embedded migrations under a lock
	Ping(ctx context.Context) error
	Close() error
}

// Reader holds the read methods; they are also available inside a Tx, where
// they see the transaction's own writes.
type Reader interface {
	GetUser(ctx context.Context, id string) (directory.User, error)                 // includes soft-deleted users
	GetUserByUserName(ctx context.Context, userName string) (directory.User, error) // case-insensitive, not deleted
	GetUserByEmail(ctx context.Context, email string) (directory.User, error)       // case-insensitive, not deleted
	FindUserByLink(ctx context.Context, source, key string) (directory.User, error)
	ListUserLinks(ctx context.Context, userID string) ([]directory.SourceLink, error)
	ListLinks(ctx context.Context, source string, after string, limit int) ([]directory.SourceLink, error) // by key
	// ScanLinks calls fn with each of a source's links (gone ones too), in
	// no particular order: one streamed read in the table's storage order,
	// for a caller that wants them all (a full sync's prefetch; SQLite
	// reads 100,000 links in a third of the time ListLinks's pages by key
	// take). fn must not call the store; an error from fn ends the read.
	ScanLinks(ctx context.Context, source string, fn func(directory.SourceLink) error) error
	ListUsers(ctx context.Context, q UserQuery) (Page[directory.User], error)
	// SearchUsers is the admin search: text in userName, e-mail or display
	// name; firms by primary firm or firm profile (sqlstore/admin.go).
	SearchUsers(ctx context.Context, q UserSearch) (Page[directory.User], error)

	GetGroup(ctx context.Context, id string) (directory.Group, error)
	FindGroupBySourceKey(ctx context.Context, source, key string) (directory.Group, error)
	ListGroups(ctx context.Context, q GroupQuery) (Page[directory.Group], error)
	// ListGroupMembers pages member user ids in id order after the given id.
	ListGroupMembers(ctx context.Context, groupID, after string, limit int) ([]string, error)
	CountGroupMembers(ctx context.Context, groupID string) (int64, error)
	IsGroupMember(ctx context.Context, groupID, userID string) (bool, error)
	ListUserGroups(ctx context.Context, userID string) ([]directory.Group, error) // direct memberships
	ListGroupChildren(ctx context.Context, groupID string) ([]string, error)      // group-in-group edges

	GetFirm(ctx context.Context, number string) (directory.Firm, error)
	ListFirms(ctx context.Context) ([]directory.Firm, error)
	GetOffice(ctx context.Context, code string) (directory.Office, error)
	ListOffices(ctx context.Context, firmNumber string) ([]directory.Office, error) // "" = all
	ListFirmMemberships(ctx context.Context, userID string) ([]directory.FirmMembership, error)
	GetLegacyLogin(ctx context.Context, login string) (directory.LegacyLogin, error)
	ListLegacyLogins(ctx context.Context, q LegacyLoginQuery) ([]directory.LegacyLogin, error)

	GetGrant(ctx context.Context, k directory.GrantKey) (directory.Grant, error)
	ListGrants(ctx context.Context, q GrantQuery) ([]directory.Grant, error)

	// GetRun returns a run; inside Update it locks the run until commit.
	GetRun(ctx context.Context, id string) (directory.Run, error)
	ListRuns(ctx context.Context, q RunQuery) ([]directory.Run, error)
	ListRunItems(ctx context.Context, q RunItemQuery) ([]directory.RunItem, error)

	GetCursor(ctx context.Context, source string) (string, error) // "" and ErrNotFound when unset
	// ListFingerprints calls fn with each of a sync source's fingerprints,
	// by key. fn must not call the store; an error from fn ends the read.
	ListFingerprints(ctx context.Context, source string, fn func(Fingerprint) error) error
	// ListUserVersions calls fn with every user's id, version and deletion
	// (soft-deleted users included), in no particular order; as
	// ListFingerprints.
	ListUserVersions(ctx context.Context, fn func(UserVersion) error) error
	// ListFingerprintsByKey returns the source's fingerprints of those keys
	// (the ones it has), in no promised order.
	ListFingerprintsByKey(ctx context.Context, source string, keys []string) ([]Fingerprint, error)
	// ListLinksOfUsers returns a source's links (gone ones too) of the
	// users ids, in no promised order.
	ListLinksOfUsers(ctx context.Context, source string, ids []string) ([]directory.SourceLink, error)
	// ListUserVersionsByID returns the versions of those of the users ids
	// that exist (soft-deleted ones included), in no promised order.
	ListUserVersionsByID(ctx context.Context, ids []string) ([]UserVersion, error)
	// GetSyncSnapshot returns a sync source's stored snapshot (ErrNotFound
	// when there is none).
	GetSyncSnapshot(ctx context.Context, source string) (SyncSnapshot, error)
	// ListAuditUsersAfter returns the distinct object ids of the audit
	// events of object type "user" (every user and link write records one)
	// with a sequence number above seq, reading at most limit such events:
	// complete is false when there were more.
	ListAuditUsersAfter(ctx context.Context, seq int64, limit int) (ids []string, complete bool, err error)
	// ListGroupFingerprints returns a sync source's group fingerprints by
	// key, each with its group's current version and deletion.
	ListGroupFingerprints(ctx context.Context, source string) ([]GroupFingerprint, error)

	BulkReader
}

// BulkReader holds the reads of full passes (reconcile): users in id order,
// then every user-keyed fact of a page's id range in one query each, so a
// pass over N users costs O(N/page) queries and holds one page at a time.
// The *InRange reads return the rows of the users whose id lies in the
// range (inclusive, in the store's id order), ordered by user id first.
type BulkReader interface {
	// ListUsersAfter pages users, soft-deleted ones included, in id order
	// after afterID ("" = from the first).
	ListUsersAfter(ctx context.Context, afterID string, limit int) ([]directory.User, error)
	ListFirmMembershipsInRange(ctx context.Context, r UserRange) ([]directory.FirmMembership, error)
	ListGroupMembershipsInRange(ctx context.Context, r UserRange) ([]GroupMembership, error) // direct memberships
	ListLinksInRange(ctx context.Context, r UserRange) ([]directory.SourceLink, error)       // gone links included
	ListLegacyLoginsInRange(ctx context.Context, r UserRange) ([]directory.LegacyLogin, error)
	ListGrantsInRange(ctx context.Context, r UserRange) ([]directory.Grant, error)
	CountGrants(ctx context.Context) (int64, error)
	ListGroupEdges(ctx context.Context) ([]GroupEdge, error) // every group-in-group edge
	// ListSourceMemberships calls fn with every direct membership in the
	// source's live groups, by group id then user id: one streamed query
	// (a sync diffs all its groups at once). fn must not call the store.
	ListSourceMemberships(ctx context.Context, source string, fn func(GroupMembership) error) error
	// ListFirmUserIDs returns the users whose primary firm is firmNumber or
	// who have a membership in it, in id order.
	ListFirmUserIDs(ctx context.Context, firmNumber string) ([]string, error)
	LastAuditSeq(ctx context.Context) (int64, error) // newest audit event's seq, 0 when none
}

// Fingerprint is a sync source's record of one comparison: its entry Key,
// whose managed fields hash to Digest (the source's own hash), matched user
// UserID at version UserVersion. Every user write bumps the user's version,
// so while the user is still at UserVersion (ListUserVersions) and not
// deleted it still holds what the entry had, and a sync that reads the same
// digest need not read the user. A cache: a missing or stale fingerprint
// only costs that read.
type Fingerprint struct {
	Key         string
	UserID      string
	Digest      string
	UserVersion int64
}

// SyncSnapshot is a sync source's own record of its state (ldapsync's
// encoding in Data) as read after audit event AuditSeq: every change made
// after it has a higher sequence number (the chain head is held until
// commit), so the events after AuditSeq name what may have moved since.
type SyncSnapshot struct {
	AuditSeq int64
	Data     []byte
}

// UserVersion is a user's current version and deletion (ListUserVersions).
type UserVersion struct {
	ID      string
	Version int64
	Deleted bool
}

// GroupFingerprint is Fingerprint for a group's members: the source's
// group Key, whose resolved members hash to Digest, matched group GroupID
// at version GroupVersion (every member change bumps a group's version).
type GroupFingerprint struct {
	Key          string
	GroupID      string
	Digest       string
	GroupVersion int64
	// Filled by ListGroupFingerprints (joined there: a source has few
	// groups): the group's version now (0 when there is no such group)
	// and whether it is soft-deleted.
	CurrentVersion int64
	Deleted        bool
}

// Fresh reports whether the fingerprint still describes its group.
func (f GroupFingerprint) Fresh() bool {
	return !f.Deleted && f.GroupVersion > 0 && f.CurrentVersion == f.GroupVersion
}

// UserRange is an inclusive range of user ids, From <= To.
type UserRange struct{ From, To string }

// GroupMembership is one direct membership of a user in a group.
type GroupMembership struct{ GroupID, UserID string }

// GroupEdge is one group-in-group edge.
type GroupEdge struct{ ParentID, ChildID string }

// Tx is a transaction: reads plus audited writes. Every mutating method
// records one audit event per changed object (before and after as JSON);
// a call that changes nothing records nothing.
type Tx interface {
	Reader

	// CreateUser inserts u; it sets ID (UUID) when empty, Version=1 and the
	// timestamps. ErrConflict when userName or e-mail is taken (case-insensitive,
	// among users not deleted).
	CreateUser(ctx context.Context, u *directory.User) error
	// UpdateUser replaces the stored user with u. When expectVersion > 0 and
	// differs from the stored version it fails with ErrVersionMismatch.
	// Increments Version and UpdatedAt only when something changed.
	UpdateUser(ctx context.Context, u *directory.User, expectVersion int64) error
	// DeleteUser soft-deletes: sets DeletedAt and Active=false; the record,
	// its links and history stay; memberships are removed.
	DeleteUser(ctx context.Context, id string) error
	// UpsertUsers writes many users in bulk (sync sources): a user whose ID
	// is empty is matched by userName (case-insensitive) and created if absent;
	// unchanged users are skipped. Returns how many were created and updated.
	UpsertUsers(ctx context.Context, users []*directory.User) (created, updated int, err error)

	PutLink(ctx context.Context, l directory.SourceLink) error // create or update (un-gones it)
	MarkLinkGone(ctx context.Context, source, key string) error
	DeleteLink(ctx context.Context, source, key string) error

	CreateGroup(ctx context.Context, g *directory.Group) error // ErrConflict on displayName within source
	UpdateGroup(ctx context.Context, g *directory.Group, expectVersion int64) error
	DeleteGroup(ctx context.Context, id string) error // soft delete; memberships removed
	// AddMembers and RemoveMembers cost O(len(userIDs)); they ignore users
	// already (not) members and record one event per actual change.
	AddMembers(ctx context.Context, groupID string, userIDs []string) error
	RemoveMembers(ctx context.Context, groupID string, userIDs []string) error
	ReplaceMembers(ctx context.Context, groupID string, userIDs []string) error
	AddGroupChild(ctx context.Context, parentID, childID string) error
	RemoveGroupChild(ctx context.Context, parentID, childID string) error

	PutFirm(ctx context.Context, f *directory.Firm) error     // create or update by Number
	PutOffice(ctx context.Context, o *directory.Office) error // create or update by Code
	PutFirmMembership(ctx context.Context, m directory.FirmMembership) error
	RemoveFirmMembership(ctx context.Context, userID, firmNumber string) error
	PutLegacyLogin(ctx context.Context, l *directory.LegacyLogin) error

	// PutGrant creates or updates the grant with g's key (scope and
	// provenance replaced by g's).
	PutGrant(ctx context.Context, g *directory.Grant) error
	DeleteGrant(ctx context.Context, k directory.GrantKey) error

	CreateRun(ctx context.Context, r *directory.Run) error
	UpdateRun(ctx context.Context, r *directory.Run) error            // status, counts, error, plan
	AddRunItems(ctx context.Context, items []directory.RunItem) error // not audited: the report itself
	SetCursor(ctx context.Context, source, value string) error
	// PutFingerprints creates or replaces a sync source's fingerprints (by
	// key). Fingerprints are a cache, not domain state: no audit event.
	PutFingerprints(ctx context.Context, source string, fps []Fingerprint) error
	// PutGroupFingerprints is PutFingerprints for group fingerprints.
	PutGroupFingerprints(ctx context.Context, source string, fps []GroupFingerprint) error
	// PutSyncSnapshot creates or replaces a sync source's snapshot; like a
	// fingerprint a cache, not domain state: no audit event.
	PutSyncSnapshot(ctx context.Context, source string, s SyncSnapshot) error

	// Record writes a free-form audit event (logins, decisions, approvals).
	Record(ctx context.Context, action, objectType, objectID string, before, after any) error
}

// Page is one page of a query; Total counts all matches.
type Page[T any] struct {
	Items []T
	Total int64
}

// UserQuery selects users. Offset is zero-based (SCIM startIndex-1);
// Limit 0 returns no items but Total; Limit < 0 means no limit. Ordering is
// stable: by SortBy then by id.
type UserQuery struct {
	Filter         Filter
	SortBy         Field // "" = id
	SortDesc       bool
	Offset, Limit  int
	IncludeDeleted bool
}

// UserSearch is the admin user search. Text matches userName, e-mail and
// display name (contains, case-insensitive); Firms, when set, keep users
// whose primary firm or one of whose firm profiles is among them. Deleted
// users are never returned. Ordered by userName (case-insensitive), then
// id; Limit 0 returns only Total, Limit < 0 means no limit.
type UserSearch struct {
	Text          string
	Firms         []string
	Offset, Limit int
}

// GroupQuery selects groups like UserQuery.
type GroupQuery struct {
	Filter         Filter
	SortBy         Field
	SortDesc       bool
	Offset, Limit  int
	IncludeDeleted bool
}

// GrantQuery selects grants; empty fields match everything.
type GrantQuery struct {
	UserID, FirmNumber, Service, Role string
}

// LegacyLoginQuery selects legacy logins; empty fields match everything.
type LegacyLoginQuery struct {
	FirmNumber, Email, UserID string
}

// RunQuery selects runs, newest first.
type RunQuery struct {
	Job    string
	Status directory.RunStatus
	Before time.Time // started before, zero = no bound (keyset paging)
	Limit  int
}

// RunItemQuery pages a run's items in Seq order.
type RunItemQuery struct {
	RunID    string
	Action   string // "" = all
	AfterSeq int64
	Limit    int
}

// AuditFilter selects audit events; zero fields match everything.
type AuditFilter struct {
	ObjectID string // e.g. a user id
	Actor    string
	Action   string
	Since    time.Time
	Until    time.Time
	AfterSeq int64
	Limit    int
}
