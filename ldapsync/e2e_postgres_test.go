package ldapsync

import (
	"context"
	"testing"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/internal/testenv"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/store/postgres"
)

func openPostgres(t *testing.T) testStore {
	t.Helper()
	ctx := context.Background()
	st, err := postgres.Open(ctx, testenv.Postgres(t), postgres.Options{})
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return st
}

func TestFullSyncOpenLDAPPostgres(t *testing.T) {
	testFullSync(t, openPostgres(t))
}

// racyTxStore runs, the first time the sync's transaction reads user
// target, another writer's change to that user in its own transaction
// (PostgreSQL: another connection, which commits at once).
type racyTxStore struct {
	testStore
	target string
	done   bool
	change func(ctx context.Context) error
}

type racyTx struct {
	store.Tx
	s *racyTxStore
}

func (s *racyTxStore) Update(ctx context.Context, m audit.Meta, fn func(ctx context.Context, tx store.Tx) error) error {
	return s.testStore.Update(ctx, m, func(ctx context.Context, tx store.Tx) error { return fn(ctx, racyTx{tx, s}) })
}

func (t racyTx) GetUser(ctx context.Context, id string) (directory.User, error) {
	u, err := t.Tx.GetUser(ctx, id)
	if id == t.s.target && !t.s.done {
		t.s.done = true
		if cerr := t.s.change(ctx); cerr != nil {
			return u, cerr
		}
	}
	return u, err
}

// TestUpdateKeepsConcurrentChange: a user update by the sync expects the
// version it read, so another writer's change committed between the
// sync's read and its write (here a field the source does not manage) is
// kept, not overwritten with the older copy.
func TestUpdateKeepsConcurrentChange(t *testing.T) {
	rs := &racyTxStore{testStore: openPostgres(t)}
	e := newEnv(t, testenv.SlapdOptions{}, rs)
	e.mustRun(RunOptions{Full: true})
	alice := e.user("alice")
	rs.target = alice.ID
	rs.change = func(ctx context.Context) error {
		return rs.testStore.Update(context.WithoutCancel(ctx), audit.Meta{Actor: "scim:entra"}, func(ctx context.Context, tx store.Tx) error {
			u, err := tx.GetUser(ctx, alice.ID)
			if err != nil {
				return err
			}
			u.ExternalID = "entra-42"
			return tx.UpdateUser(ctx, &u, 0)
		})
	}
	e.ldap.Modify("dn: uid=alice,ou=people," + suffix + "\nchangetype: modify\nreplace: mail\nmail: alice.new@firm.example\n")
	res := e.mustRun(RunOptions{Full: true})
	if !rs.done || res.Counts["updated"] != 1 {
		t.Fatalf("the concurrent change did not run (%v) or counts %v", rs.done, res.Counts)
	}
	got := e.user("alice")
	if got.Email != "alice.new@firm.example" || got.ExternalID != "entra-42" {
		t.Fatalf("alice = e-mail %q, externalId %q: want the directory's e-mail and the other writer's externalId", got.Email, got.ExternalID)
	}
}
