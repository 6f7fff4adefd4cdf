package scim

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/store"
)

// memberReads counts every read of a group's member list, through the
// backend and inside its transactions.
type memberReads struct {
	store.Store
	n atomic.Int64
}

func (m *memberReads) ListGroupMembers(ctx context.Context, groupID, after string, limit int) ([]string, error) {
	m.n.Add(1)
	return m.Store.ListGroupMembers(ctx, groupID, after, limit)
}

func (m *memberReads) Update(ctx context.Context, meta audit.Meta, fn func(ctx context.Context, tx store.Tx) error) error {
	return m.Store.Update(ctx, meta, func(ctx context.Context, tx store.Tx) error { return fn(ctx, memberReadsTx{tx, &m.n}) })
}

type memberReadsTx struct {
	store.Tx
	n *atomic.Int64
}

func (t memberReadsTx) ListGroupMembers(ctx context.Context, groupID, after string, limit int) ([]string, error) {
	t.n.Add(1)
	return t.Tx.ListGroupMembers(ctx, groupID, after, limit)
}

// TestMemberPatchReadsNoMemberList: adding or removing members by PATCH
// (Entra's and Okta's forms) costs O(changed members): the member list is
// never read, so a group of 100,000 members costs what a group of 3 does
// (BenchmarkGroupMember100k measures the time).
func TestMemberPatchReadsNoMemberList(t *testing.T) {
	e := newEnv(t)
	a, b, c := e.createUser("ma@example.org", nil), e.createUser("mb@example.org", nil), e.createUser("mc@example.org", nil)
	gid := e.createGroup("Counted", a, b)
	mr := &memberReads{Store: e.st}
	h, err := New(mr, testVerifier(t), Options{BaseURL: "https://dirsyncd.test/scim/v2"})
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	e.srv = httptest.NewServer(stripped(h))
	t.Cleanup(e.srv.Close)
	for _, body := range []map[string]any{
		patchBody(map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": c}}}),
		patchBody(map[string]any{"op": "remove", "path": fmt.Sprintf(`members[value eq "%s"]`, a)}),
		patchBody(map[string]any{"op": "Remove", "path": "members", "value": []any{map[string]any{"value": b}}}),
		patchBody(map[string]any{"op": "Add", "path": "members", "value": []any{map[string]any{"value": a}, map[string]any{"value": b}}}),
	} {
		e.must(e.do("PATCH", "/Groups/"+gid, body), 204)
	}
	if n := mr.n.Load(); n != 0 {
		t.Errorf("member PATCHes read the member list %d times", n)
	}
	if got := members(t, e, gid); len(got) != 3 {
		t.Errorf("members %v, want all three", got)
	}
	// The counter works: a GET with members reads the list.
	e.must(e.do("GET", "/Groups/"+gid, nil), 200)
	if mr.n.Load() == 0 {
		t.Error("GET with members did not read the member list: the counter counts nothing")
	}
}

func stripped(h *Handler) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/scim/v2/", http.StripPrefix("/scim/v2", h))
	return mux
}
