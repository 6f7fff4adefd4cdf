package sqlstore_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/store/sqlite"
)

// TestVerifyAuditSeesEventsPastTheHead: VerifyAudit walks the chain up to
// the head it reads first; a head moved back (an edit of the head row, not
// of any event) left the events after it unchecked, so editing them went
// unnoticed. Every committed event is at or below the head (they commit
// together), so an event past a head read after it is a problem.
func TestVerifyAuditSeesEventsPastTheHead(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "dirsyncd.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := st.Update(ctx, audit.Meta{Actor: "test"}, func(ctx context.Context, tx store.Tx) error {
			return tx.Record(ctx, "test.event", "test", "x", nil, map[string]int{"i": i})
		}); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := st.VerifyAudit(ctx); err != nil || !v.OK() {
		t.Fatalf("VerifyAudit before tampering = %+v %v", v, err)
	}
	for _, q := range []string{
		`DROP TRIGGER audit_events_no_update`,
		`UPDATE audit_head SET seq = 1, hash = (SELECT hash FROM audit_events WHERE seq = 1) WHERE id = 1`,
		`UPDATE audit_events SET after_json = '{"i":42}' WHERE seq = 3`,
	} {
		if err := st.TestingExecRaw(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	v, err := st.VerifyAudit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v.OK() {
		t.Fatalf("head moved back to event 1 and event 3 edited: VerifyAudit OK (checked %d)", v.Checked)
	}
	found := false
	for _, p := range v.Problems {
		found = found || strings.Contains(p.Reason, "after the chain head")
	}
	if !found {
		t.Errorf("problems %v lack the events after the head", v.Problems)
	}
}
