package scim

import (
	"context"
	"fmt"
	"testing"

	"github.com/dirsyncd/dirsyncd/store"
)

// TestRemoveActiveDeprovisions: PATCH remove of path "active" (or replace
// with null) leaves active unassigned, which dirsyncd reads as not active
// (fail closed): the user is deprovisioned, its grants revoked, and an
// inactive user is never reactivated by it. A PUT with "active": null is
// a PUT without active (RFC 7643 §2.5: null is unassigned): activation is
// kept as it is.
func TestRemoveActiveDeprovisions(t *testing.T) { bothStores(t, testRemoveActiveDeprovisions) }

func testRemoveActiveDeprovisions(t *testing.T, e *env) {
	for i, op := range []map[string]any{
		{"op": "remove", "path": "active"},
		{"op": "Remove", "path": "active"},
		{"op": "replace", "path": "active", "value": nil},
	} {
		name := fmt.Sprintf("ra%d@example.org", i)
		id := e.createUser(name, nil)
		grantFor(t, e.st, id)
		r := e.must(e.do("PATCH", "/Users/"+id, patchBody(op)), 200)
		if r.Body["active"] != false {
			t.Errorf("%v on an active user: active %v, want false", op, r.Body["active"])
		}
		if gs, _ := e.st.ListGrants(context.Background(), store.GrantQuery{UserID: id}); len(gs) != 0 {
			t.Errorf("%v: grants left: %v", op, gs)
		}
		// an inactive user stays inactive
		r = e.must(e.do("PATCH", "/Users/"+id, patchBody(op)), 200)
		if r.Body["active"] != false {
			t.Errorf("%v on an inactive user: active %v, want false", op, r.Body["active"])
		}
		r = e.must(e.do("PUT", "/Users/"+id, map[string]any{"schemas": []string{URNUser}, "userName": name, "active": nil}), 200)
		if r.Body["active"] != false {
			t.Errorf("PUT with active null on an inactive user: active %v, want false", r.Body["active"])
		}
		if g := e.must(e.do("GET", "/Users/"+id, nil), 200); g.Body["active"] != false {
			t.Errorf("%v: GET: active %v, want false", op, g.Body["active"])
		}
	}
}
