package ldapsync

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/internal/testenv"
	"github.com/dirsyncd/dirsyncd/store"
)

// A group with 20,000 members: paged reads, one membership write set, and a
// no-change second run that writes nothing.
func TestLargeGroup20000(t *testing.T) {
	if testing.Short() && os.Getenv("CI") == "" { // with CI set it always runs
		t.Skip("large fixture: not in -short")
	}
	const n = 20000
	ldif := genDirectory(n, 2, func(i int) []int { return []int{0} })
	e := newEnv(t, testenv.SlapdOptions{LDIF: ldif}, nil)
	e.src.PageSize, e.src.BatchSize = 1000, 1000
	e.timeout = 10 * time.Minute // 20,000 creates under -race on a shared 2-core machine
	res := e.mustRun(RunOptions{})
	if res.Counts["created"] != n || res.Counts["members_added"] != n {
		t.Fatalf("counts %v", res.Counts)
	}
	ctx := context.Background()
	p, err := e.st.ListGroups(ctx, store.GroupQuery{Filter: store.Cmp{Field: "displayName", Op: store.OpEq, Value: "g00000"}, Limit: 1})
	if err != nil || len(p.Items) != 1 {
		t.Fatalf("g00000: %v", err)
	}
	if c, _ := e.st.CountGroupMembers(ctx, p.Items[0].ID); c != n {
		t.Fatalf("g00000 has %d members, want %d", c, n)
	}
	res2 := e.mustRun(RunOptions{Full: true})
	if w := e.domainEvents(res2.RunID); w != 0 || res2.Counts["unchanged"] != n {
		t.Fatalf("no-change run wrote %d events, counts %v", w, res2.Counts)
	}
}
