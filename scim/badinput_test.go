package scim

import (
	"strings"
	"testing"
)

func TestBadInput(t *testing.T) { bothStores(t, testBadInput) }

func testBadInput(t *testing.T, e *env) {
	id := e.createUser("eve@example.org", map[string]any{"title": "Clerk"})
	big := `{"schemas":["` + URNUser + `"],"userName":"big","title":"` + strings.Repeat("x", 1<<20) + `"}`
	cases := []struct {
		name, method, path string
		body               any
		status             int
		scimType           string
	}{
		{"body over 1 MiB", "POST", "/Users", big, 413, ""},
		{"patch over 1 MiB", "PATCH", "/Users/" + id, big, 413, ""},
		{"malformed JSON", "POST", "/Users", `{"schemas":[`, 400, TypeInvalidSyntax},
		{"not an object", "POST", "/Users", `[1,2]`, 400, TypeInvalidSyntax},
		{"no schemas", "POST", "/Users", `{"userName":"x"}`, 400, TypeInvalidSyntax},
		{"unknown schema URN", "POST", "/Users", map[string]any{"schemas": []string{URNUser, "urn:example:nope"}, "userName": "x"}, 400, TypeInvalidSyntax},
		{"unknown extension object", "POST", "/Users", map[string]any{"schemas": []string{URNUser}, "userName": "x", "urn:example:nope": map[string]any{}}, 400, TypeInvalidSyntax},
		{"wrong type userName", "POST", "/Users", map[string]any{"schemas": []string{URNUser}, "userName": 42}, 400, TypeInvalidValue},
		{"wrong type active", "POST", "/Users", map[string]any{"schemas": []string{URNUser}, "userName": "x", "active": "maybe"}, 400, TypeInvalidValue},
		{"missing userName", "POST", "/Users", map[string]any{"schemas": []string{URNUser}}, 400, TypeInvalidValue},
		{"bad email", "POST", "/Users", map[string]any{"schemas": []string{URNUser}, "userName": "x", "emails": []any{map[string]any{"value": "not an email"}}}, 400, TypeInvalidValue},
		{"invalid filter", "GET", `/Users?filter=userName%20eq%20`, nil, 400, TypeInvalidFilter},
		{"unfilterable attribute", "GET", `/Users?filter=password%20eq%20%22x%22`, nil, 400, TypeInvalidFilter},
		{"patch wrong schema", "PATCH", "/Users/" + id, map[string]any{"schemas": []string{URNUser}, "Operations": []any{}}, 400, TypeInvalidSyntax},
		{"patch no operations", "PATCH", "/Users/" + id, map[string]any{"schemas": []string{URNPatchOp}, "Operations": []any{}}, 400, TypeInvalidSyntax},
		{"patch unknown op", "PATCH", "/Users/" + id, patchBody(map[string]any{"op": "move", "path": "title"}), 400, TypeInvalidSyntax},
		{"patch remove without path", "PATCH", "/Users/" + id, patchBody(map[string]any{"op": "remove"}), 400, TypeNoTarget},
		{"patch missing filter target", "PATCH", "/Users/" + id, patchBody(map[string]any{"op": "remove", "path": `phoneNumbers[type eq "fax"]`}), 400, TypeNoTarget},
		{"patch replace missing target", "PATCH", "/Users/" + id, patchBody(map[string]any{"op": "replace", "path": `emails[value co "zzz" or type eq "home"]`, "value": map[string]any{"value": "a@b.c"}}), 400, TypeNoTarget},
		{"patch bad path", "PATCH", "/Users/" + id, patchBody(map[string]any{"op": "replace", "path": "emails[", "value": "x"}), 400, TypeInvalidPath},
		{"patch unknown attribute", "PATCH", "/Users/" + id, patchBody(map[string]any{"op": "replace", "path": "shoeSize", "value": "x"}), 400, TypeInvalidPath},
		{"patch read-only", "PATCH", "/Users/" + id, patchBody(map[string]any{"op": "replace", "path": "groups", "value": []any{}}), 400, TypeMutability},
		{"patch read-only roles", "PATCH", "/Users/" + id, patchBody(map[string]any{"op": "add", "path": URNDirsyncd + ":roles", "value": []any{map[string]any{"service": "ccms", "role": "admin"}}}), 400, TypeMutability},
		{"patch read-only offices", "PATCH", "/Users/" + id, patchBody(map[string]any{"op": "replace", "path": URNDirsyncd + ":offices", "value": []any{"0Q731M"}}), 400, TypeMutability},
		{"patch wrong value type", "PATCH", "/Users/" + id, patchBody(map[string]any{"op": "replace", "path": "active", "value": 3}), 400, TypeInvalidValue},
		{"unknown resource", "GET", "/Users/nope", nil, 404, ""},
		{"unknown endpoint", "GET", "/Widgets", nil, 404, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(c.method, c.path, c.body)
			if r.Status != c.status {
				t.Fatalf("status %d, want %d: %.300s", r.Status, c.status, r.Raw)
			}
			if r.Body["scimType"] != nil && c.scimType == "" || c.scimType != "" && r.Body["scimType"] != c.scimType {
				t.Errorf("scimType %v, want %q", r.Body["scimType"], c.scimType)
			}
			if r.Body["schemas"] == nil {
				t.Errorf("not a SCIM error body: %s", r.Raw)
			}
		})
	}
	// a PATCH whose last operation fails changes nothing.
	e.must(e.do("PATCH", "/Users/"+id, patchBody(
		map[string]any{"op": "replace", "path": "title", "value": "Partner"},
		map[string]any{"op": "replace", "path": "active", "value": false},
		map[string]any{"op": "remove", "path": `emails[type eq "nope"]`},
	)), 400)
	r := e.must(e.do("GET", "/Users/"+id, nil), 200)
	if r.Body["title"] != "Clerk" || r.Body["active"] != true || r.Header.Get("ETag") != `W/"1"` {
		t.Errorf("half-applied PATCH: %s", r.Raw)
	}
}
