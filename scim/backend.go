package scim

import (
	"context"
	"sync"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// Backend is the part of store.Store the SCIM server uses. Reads outside a
// transaction serve GETs; every change runs in Update, whose audit.Meta names
// the SCIM client ("scim:<client>") and the request id. store.Store satisfies
// it; the interface is declared here, by its consumer.
type Backend interface {
	GetUser(ctx context.Context, id string) (directory.User, error)
	ListUsers(ctx context.Context, q store.UserQuery) (store.Page[directory.User], error)
	ListUserGroups(ctx context.Context, userID string) ([]directory.Group, error)
	ListGrants(ctx context.Context, q store.GrantQuery) ([]directory.Grant, error)
	GetGroup(ctx context.Context, id string) (directory.Group, error)
	ListGroups(ctx context.Context, q store.GroupQuery) (store.Page[directory.Group], error)
	ListGroupMembers(ctx context.Context, groupID, after string, limit int) ([]string, error)
	Update(ctx context.Context, m audit.Meta, fn func(ctx context.Context, tx store.Tx) error) error
}

// Enqueuer receives the ids of users whose facts changed (attributes,
// activation, deletion, group membership) after the change is committed, so
// that reconciliation recomputes their grants. The reconcile package
// provides the production implementation.
type Enqueuer interface {
	Enqueue(ctx context.Context, userIDs ...string)
}

// NopEnqueuer drops every id.
type NopEnqueuer struct{}

// Enqueue implements Enqueuer.
func (NopEnqueuer) Enqueue(context.Context, ...string) {}

// RecordingEnqueuer remembers every enqueued id, in order, for tests and for
// deployments without reconciliation.
type RecordingEnqueuer struct {
	mu  sync.Mutex
	ids []string
}

// Enqueue implements Enqueuer.
func (r *RecordingEnqueuer) Enqueue(_ context.Context, userIDs ...string) {
	r.mu.Lock()
	r.ids = append(r.ids, userIDs...)
	r.mu.Unlock()
}

// IDs returns a copy of the ids enqueued so far.
func (r *RecordingEnqueuer) IDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}

// Reset forgets the ids enqueued so far.
func (r *RecordingEnqueuer) Reset() {
	r.mu.Lock()
	r.ids = nil
	r.mu.Unlock()
}

// batchUpdater is Update that may commit concurrent SCIM writes together
// (store/sqlstore/scim_batch.go: group commit on SQLite, each write in its
// own savepoint and audited inside it). Without it, writes use Update.
type batchUpdater interface {
	SCIMUpdate(ctx context.Context, m audit.Meta, fn func(ctx context.Context, tx store.Tx) error) error
}

// update runs one SCIM write: atomically, audited as m, committed before it
// returns.
func (h *Handler) update(ctx context.Context, m audit.Meta, fn func(ctx context.Context, tx store.Tx) error) error {
	if bu, ok := h.b.(batchUpdater); ok {
		return bu.SCIMUpdate(ctx, m, fn)
	}
	return h.b.Update(ctx, m, fn)
}
