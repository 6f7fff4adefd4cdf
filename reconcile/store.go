package reconcile

import (
	"context"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// Store is what reconcile needs from the store: a subset of store.Store.
type Store interface {
	Update(ctx context.Context, m audit.Meta, fn func(ctx context.Context, tx store.Tx) error) error

	GetUser(ctx context.Context, id string) (directory.User, error)
	ListUsers(ctx context.Context, q store.UserQuery) (store.Page[directory.User], error)
	ListUserLinks(ctx context.Context, userID string) ([]directory.SourceLink, error)
	ListLinks(ctx context.Context, source string, after string, limit int) ([]directory.SourceLink, error)
	ListGroups(ctx context.Context, q store.GroupQuery) (store.Page[directory.Group], error)
	ListUserGroups(ctx context.Context, userID string) ([]directory.Group, error)
	ListFirms(ctx context.Context) ([]directory.Firm, error)
	ListOffices(ctx context.Context, firmNumber string) ([]directory.Office, error)
	ListFirmMemberships(ctx context.Context, userID string) ([]directory.FirmMembership, error)
	ListLegacyLogins(ctx context.Context, q store.LegacyLoginQuery) ([]directory.LegacyLogin, error)
	GetGrant(ctx context.Context, k directory.GrantKey) (directory.Grant, error)
	ListGrants(ctx context.Context, q store.GrantQuery) ([]directory.Grant, error)
	GetRun(ctx context.Context, id string) (directory.Run, error)
	GetCursor(ctx context.Context, source string) (string, error)

	// bulk reads of full runs
	ListUsersAfter(ctx context.Context, afterID string, limit int) ([]directory.User, error)
	ListFirmMembershipsInRange(ctx context.Context, r store.UserRange) ([]directory.FirmMembership, error)
	ListGroupMembershipsInRange(ctx context.Context, r store.UserRange) ([]store.GroupMembership, error)
	ListLinksInRange(ctx context.Context, r store.UserRange) ([]directory.SourceLink, error)
	ListLegacyLoginsInRange(ctx context.Context, r store.UserRange) ([]directory.LegacyLogin, error)
	ListGrantsInRange(ctx context.Context, r store.UserRange) ([]directory.Grant, error)
	CountGrants(ctx context.Context) (int64, error)
	ListGroupEdges(ctx context.Context) ([]store.GroupEdge, error)
}

var _ Store = store.Store(nil)
