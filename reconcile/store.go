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
	ListGroupMembers(ctx context.Context, groupID, after string, limit int) ([]string, error)
	ListUserGroups(ctx context.Context, userID string) ([]directory.Group, error)
	ListGroupChildren(ctx context.Context, groupID string) ([]string, error)
	ListFirms(ctx context.Context) ([]directory.Firm, error)
	ListOffices(ctx context.Context, firmNumber string) ([]directory.Office, error)
	ListFirmMemberships(ctx context.Context, userID string) ([]directory.FirmMembership, error)
	ListLegacyLogins(ctx context.Context, q store.LegacyLoginQuery) ([]directory.LegacyLogin, error)
	GetGrant(ctx context.Context, k directory.GrantKey) (directory.Grant, error)
	ListGrants(ctx context.Context, q store.GrantQuery) ([]directory.Grant, error)
	GetRun(ctx context.Context, id string) (directory.Run, error)
	GetCursor(ctx context.Context, source string) (string, error)
}

var _ Store = store.Store(nil)
