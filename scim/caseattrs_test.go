package scim

import (
	"context"
	"testing"
)

// TestCaseAccessAttributes: the dirsyncd extension carries the user's usual
// role and location, which case-access group grants match (caseaccess);
// they are written by POST, PATCH and PUT (a PUT without them clears them,
// as a full replace does) and returned by GET.
func TestCaseAccessAttributes(t *testing.T) { bothStores(t, testCaseAccessAttributes) }

func testCaseAccessAttributes(t *testing.T, e *env) {
	ctx := context.Background()
	r := e.must(e.do("POST", "/Users", map[string]any{
		"schemas":   []string{URNUser, URNDirsyncd},
		"userName":  "pat.crown@example.org",
		URNDirsyncd: map[string]any{"firmNumber": "3856", "usualRole": "Prosecutor ", "location": "Leeds"},
	}), 201)
	id := r.Body["id"].(string)
	stored := func() (string, string) {
		u, err := e.st.GetUser(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return u.UsualRole, u.Location
	}
	if role, loc := stored(); role != "Prosecutor" || loc != "Leeds" {
		t.Fatalf("stored usualRole %q location %q", role, loc)
	}
	g := e.must(e.do("GET", "/Users/"+id, nil), 200)
	if get(g.Body, URNDirsyncd, "usualRole") != "Prosecutor" || get(g.Body, URNDirsyncd, "location") != "Leeds" {
		t.Fatalf("GET: %s", g.Raw)
	}
	e.must(e.do("PATCH", "/Users/"+id, map[string]any{
		"schemas":    []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
		"Operations": []any{map[string]any{"op": "replace", "path": URNDirsyncd + ":location", "value": "Bradford"}},
	}), 200)
	if role, loc := stored(); role != "Prosecutor" || loc != "Bradford" {
		t.Fatalf("after PATCH: usualRole %q location %q", role, loc)
	}
	e.must(e.do("PUT", "/Users/"+id, map[string]any{
		"schemas": []string{URNUser}, "userName": "pat.crown@example.org",
	}), 200)
	if role, loc := stored(); role != "" || loc != "" {
		t.Fatalf("after PUT without them: usualRole %q location %q", role, loc)
	}
	s := e.must(e.do("GET", "/Schemas/"+URNDirsyncd, nil), 200)
	attrs, _ := s.Body["attributes"].([]any)
	names := map[string]bool{}
	for _, a := range attrs {
		if m, ok := a.(map[string]any); ok {
			names[m["name"].(string)] = true
		}
	}
	if !names["usualRole"] || !names["location"] {
		t.Fatalf("schema attributes %v", names)
	}
}
