package storetest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/store"
)

// scimUpdater is the SCIM server's write path (store/sqlstore/scim_batch.go):
// Update, except that on SQLite concurrent calls commit together.
type scimUpdater interface {
	SCIMUpdate(ctx context.Context, m audit.Meta, fn func(ctx context.Context, tx store.Tx) error) error
}

// scimBatches tells how many SCIMUpdate calls wait behind a running batch
// and how many batches have committed.
type scimBatches interface {
	TestingSCIMBatches() (queued int, committed int64)
}

// testSCIMGroupCommit: writes racing one held open each keep Update's
// guarantees — a write that fails (its own error, a uniqueness conflict,
// its audit write, a panic) leaves nothing and no event, the others commit
// with exactly their own events and the chain verifies. On SQLite the
// racing writes are queued behind the held one and share its transaction:
// one commit for all of them.
func testSCIMGroupCommit(e *env) {
	t := e.t
	su, ok := e.s.(scimUpdater)
	if !ok {
		t.Fatalf("store %T has no SCIMUpdate", e.s)
	}
	q, batching := e.s.(scimBatches)
	batching = batching && e.h.Dialect() == "sqlite"
	switch e.h.Dialect() {
	case "sqlite":
		e.raw(`CREATE TRIGGER inject_fail BEFORE INSERT ON audit_events WHEN NEW.actor = 'scim:bad-audit' BEGIN SELECT RAISE(ABORT, 'injected audit failure'); END`)
	case "postgres":
		e.raw(`CREATE FUNCTION inject_fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.actor = 'scim:bad-audit' THEN RAISE EXCEPTION 'injected audit failure'; END IF; RETURN NEW; END; $$;
CREATE TRIGGER inject_fail BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION inject_fail();`)
	}

	var leadID string
	leaderIn, release := make(chan struct{}), make(chan struct{})
	leaderErr := make(chan error, 1)
	go func() {
		leaderErr <- su.SCIMUpdate(e.ctx, audit.Meta{Actor: "scim:leader"}, func(ctx context.Context, tx store.Tx) error {
			u := user("lead", "lead@example.org")
			if err := tx.CreateUser(ctx, &u); err != nil {
				return err
			}
			leadID = u.ID
			close(leaderIn)
			<-release
			return nil
		})
	}()
	<-leaderIn

	// kinds of racing write, by i%5: 0 commits (and, batched, looks at the
	// held write), 1 fails by itself, 2 conflicts with the held write's
	// userName, 3 fails to write its audit event, 4 panics.
	const n = 15
	boom := errors.New("refused")
	errs := make([]error, n)
	panics := make([]any, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { panics[i] = recover() }()
			actor := fmt.Sprintf("scim:w%d", i)
			if i%5 == 3 {
				actor = "scim:bad-audit"
			}
			errs[i] = su.SCIMUpdate(e.ctx, audit.Meta{Actor: actor, RequestID: fmt.Sprint(i)}, func(ctx context.Context, tx store.Tx) error {
				name := fmt.Sprintf("w%d", i)
				if i%5 == 2 {
					name = "LEAD"
				}
				u := user(name, "")
				if err := tx.CreateUser(ctx, &u); err != nil {
					return err
				}
				switch i % 5 {
				case 1:
					return boom
				case 4:
					panic("write panicked")
				}
				return nil
			})
		}()
	}
	// One more racing write, whose caller gives up while it is queued
	// (batched only: on PostgreSQL it runs at once).
	cctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	gaveUp := make(chan error, 1)
	queuedWant := n
	if batching {
		queuedWant++
		go func() {
			gaveUp <- su.SCIMUpdate(cctx, audit.Meta{Actor: "scim:gave-up"}, func(ctx context.Context, tx store.Tx) error {
				u := user("gave-up", "")
				return tx.CreateUser(ctx, &u)
			})
		}()
	}
	var commits0 int64
	if batching {
		for {
			queued, c := q.TestingSCIMBatches()
			if queued == queuedWant {
				cancel()
				commits0 = c
				break
			}
			runtime.Gosched()
		}
	}
	close(release)
	wg.Wait()
	if err := <-leaderErr; err != nil {
		t.Fatalf("held write: %v", err)
	}
	if batching {
		if err := <-gaveUp; !errors.Is(err, context.Canceled) {
			t.Errorf("write given up while queued: err %v, want context.Canceled", err)
		}
		if _, err := e.s.GetUserByUserName(e.ctx, "gave-up"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("write given up while queued is stored (%v)", err)
		}
		if _, c := q.TestingSCIMBatches(); c != commits0+1 {
			t.Errorf("%d commits for the held write and the %d queued behind it, want 1", c-commits0, queuedWant)
		}
	}

	wantActors := []string{"scim:leader"}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("w%d", i)
		_, getErr := e.s.GetUserByUserName(e.ctx, name)
		switch i % 5 {
		case 0:
			if errs[i] != nil || panics[i] != nil || getErr != nil {
				t.Errorf("write %d: err %v, panic %v, stored: %v", i, errs[i], panics[i], getErr)
			}
			wantActors = append(wantActors, fmt.Sprintf("scim:w%d", i))
			continue
		case 1:
			if !errors.Is(errs[i], boom) {
				t.Errorf("write %d: err %v, want its own", i, errs[i])
			}
		case 2:
			if !errors.Is(errs[i], store.ErrConflict) {
				t.Errorf("write %d (userName of the held write): err %v, want a conflict", i, errs[i])
			}
			continue // its user has the held write's name
		case 3:
			if errs[i] == nil || !strings.Contains(errs[i].Error(), "audit") {
				t.Errorf("write %d: err %v, want its audit write failure", i, errs[i])
			}
		case 4:
			if panics[i] != "write panicked" {
				t.Errorf("write %d: panic %v, want it raised in its caller", i, panics[i])
			}
		}
		if !errors.Is(getErr, store.ErrNotFound) {
			t.Errorf("write %d failed but its user is stored (%v)", i, getErr)
		}
	}
	if _, err := e.s.GetUser(e.ctx, leadID); err != nil {
		t.Fatalf("held write's user: %v", err)
	}
	var gotActors []string
	for _, ev := range e.events() {
		if ev.Action != "user.create" {
			t.Errorf("event %d: %s by %s, want only user.create", ev.Seq, ev.Action, ev.Actor)
		}
		gotActors = append(gotActors, ev.Actor)
	}
	sort.Strings(gotActors)
	sort.Strings(wantActors)
	if strings.Join(gotActors, ",") != strings.Join(wantActors, ",") {
		t.Errorf("audit actors %v, want one event per committed write %v", gotActors, wantActors)
	}
	v, err := e.s.VerifyAudit(e.ctx)
	if err != nil || !v.OK() || v.Checked != int64(len(wantActors)) {
		t.Fatalf("VerifyAudit = checked %d problems %v err %v, want %d events", v.Checked, v.Problems, err, len(wantActors))
	}
	// The store writes normally afterwards (the batch released the writer).
	e.createUser(user("after", ""))
}
