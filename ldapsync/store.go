package ldapsync

import (
	"context"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// Store is what ldapsync needs from the store (a subset of store.Store).
type Store interface {
	Reader
	Update(ctx context.Context, m audit.Meta, fn func(ctx context.Context, tx store.Tx) error) error
}

// Reader is the subset of store.Reader ldapsync reads, outside and inside
// transactions (plans are computed with it, also for dry runs).
type Reader interface {
	GetUser(ctx context.Context, id string) (directory.User, error)
	GetUserByUserName(ctx context.Context, userName string) (directory.User, error)
	GetUserByEmail(ctx context.Context, email string) (directory.User, error)
	FindUserByLink(ctx context.Context, source, key string) (directory.User, error)
	ListUserLinks(ctx context.Context, userID string) ([]directory.SourceLink, error)
	ScanLinks(ctx context.Context, source string, fn func(directory.SourceLink) error) error
	ListUsers(ctx context.Context, q store.UserQuery) (store.Page[directory.User], error)
	ListGroups(ctx context.Context, q store.GroupQuery) (store.Page[directory.Group], error)
	GetCursor(ctx context.Context, source string) (string, error)
	ListSourceMemberships(ctx context.Context, source string, fn func(store.GroupMembership) error) error
	ListGroupEdges(ctx context.Context) ([]store.GroupEdge, error)
	FindGroupBySourceKey(ctx context.Context, source, key string) (directory.Group, error)
	ListGroupMembers(ctx context.Context, groupID, after string, limit int) ([]string, error)
	ListGroupFingerprints(ctx context.Context, source string) ([]store.GroupFingerprint, error)
	ListFingerprints(ctx context.Context, source string, fn func(store.Fingerprint) error) error
	ListUserVersions(ctx context.Context, fn func(store.UserVersion) error) error
	ListFingerprintsByKey(ctx context.Context, source string, keys []string) ([]store.Fingerprint, error)
	ListLinksOfUsers(ctx context.Context, source string, ids []string) ([]directory.SourceLink, error)
	ListUserVersionsByID(ctx context.Context, ids []string) ([]store.UserVersion, error)
	GetSyncSnapshot(ctx context.Context, source string) (store.SyncSnapshot, error)
	ListAuditUsersAfter(ctx context.Context, seq int64, limit int) (ids []string, complete bool, err error)
	LastAuditSeq(ctx context.Context) (int64, error)
}

// writer is the subset of store.Tx ldapsync writes with.
type writer interface {
	GetUser(ctx context.Context, id string) (directory.User, error)
	UpdateUser(ctx context.Context, u *directory.User, expectVersion int64) error
	UpsertUsers(ctx context.Context, users []*directory.User) (created, updated int, err error)
	PutLink(ctx context.Context, l directory.SourceLink) error
	MarkLinkGone(ctx context.Context, source, key string) error
	CreateGroup(ctx context.Context, g *directory.Group) error
	UpdateGroup(ctx context.Context, g *directory.Group, expectVersion int64) error
	DeleteGroup(ctx context.Context, id string) error
	AddMembers(ctx context.Context, groupID string, userIDs []string) error
	RemoveMembers(ctx context.Context, groupID string, userIDs []string) error
	AddGroupChild(ctx context.Context, parentID, childID string) error
	RemoveGroupChild(ctx context.Context, parentID, childID string) error
	CreateRun(ctx context.Context, r *directory.Run) error
	UpdateRun(ctx context.Context, r *directory.Run) error
	AddRunItems(ctx context.Context, items []directory.RunItem) error
	SetCursor(ctx context.Context, source, value string) error
	PutFingerprints(ctx context.Context, source string, fps []store.Fingerprint) error
	PutGroupFingerprints(ctx context.Context, source string, fps []store.GroupFingerprint) error
	PutSyncSnapshot(ctx context.Context, source string, s store.SyncSnapshot) error
	GetGroup(ctx context.Context, id string) (directory.Group, error)
	ListGroupMembers(ctx context.Context, groupID, after string, limit int) ([]string, error)
}

var _ writer = store.Tx(nil)

// bulkLinker is implemented by transactions that write many source links
// at once (the SQL store's PutLinks: same semantics as PutLink per link);
// with another writer the sync puts them one by one.
type bulkLinker interface {
	PutLinks(ctx context.Context, ls []directory.SourceLink) (int, error)
}
