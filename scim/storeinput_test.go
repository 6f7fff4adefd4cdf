package scim

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestInputTheStoreCannotHoldIs4xx: values that PostgreSQL refuses (a NUL
// character, invalid UTF-8, a key longer than a btree index entry may be)
// are bad input, answered 400 (404 for an id in the URL), never 500; the
// fuzz targets run on SQLite, which stores all of them.
func TestInputTheStoreCannotHoldIs4xx(t *testing.T) { bothStores(t, testInputTheStoreCannotHoldIs4xx) }

func testInputTheStoreCannotHoldIs4xx(t *testing.T, e *env) {
	id := e.createUser("store-input@example.org", nil)
	gid := e.createGroup("Store input", id)
	// Random-looking, so that PostgreSQL cannot compress it below the
	// btree entry limit (2704 bytes).
	var sb strings.Builder
	for x := uint32(1); sb.Len() < 9000; {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		sb.WriteByte("abcdefghijklmnopqrstuvwxyz0123456789"[x%36])
	}
	long := sb.String()
	n := 0
	user := func(kv ...any) map[string]any {
		n++
		m := map[string]any{"schemas": []string{URNUser}, "userName": fmt.Sprintf("x%d@example.org", n)}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	cases := []struct {
		name, method, path string
		body               any
		status             int
	}{
		{"long userName", "POST", "/Users", user("userName", long), 400},
		{"long externalId", "POST", "/Users", user("externalId", long), 400},
		{"long e-mail", "POST", "/Users", user("emails", []any{map[string]any{"value": long[:5000] + "@example.org"}}), 400},
		{"long userName by PUT", "PUT", "/Users/" + id, user("userName", long), 400},
		{"long externalId by PATCH", "PATCH", "/Users/" + id, patchBody(map[string]any{"op": "replace", "path": "externalId", "value": long}), 400},
		{"long group displayName", "POST", "/Groups", map[string]any{"schemas": []string{URNGroup}, "displayName": long}, 400},
		{"long group externalId", "POST", "/Groups", map[string]any{"schemas": []string{URNGroup}, "displayName": "g", "externalId": long}, 400},
		{"NUL in userName", "POST", "/Users", `{"schemas":["` + URNUser + `"],"userName":"a\u0000b"}`, 400},
		{"NUL in PATCH value", "PATCH", "/Users/" + id, `{"schemas":["` + URNPatchOp + `"],"Operations":[{"op":"replace","path":"title","value":"a\u0000b"}]}`, 400},
		{"NUL in member id", "PATCH", "/Groups/" + gid, `{"schemas":["` + URNPatchOp + `"],"Operations":[{"op":"add","path":"members","value":[{"value":"a\u0000b"}]}]}`, 400},
		{"NUL in group name", "POST", "/Groups", `{"schemas":["` + URNGroup + `"],"displayName":"a\u0000b"}`, 400},
		{"invalid UTF-8 in filter", "GET", "/Users?filter=externalId%20eq%20%22a%FFb%22", nil, 400},
		{"NUL in id", "GET", "/Users/a%00b", nil, 404},
		{"invalid UTF-8 in id", "GET", "/Users/a%FFb", nil, 404},
		{"invalid UTF-8 in group id", "DELETE", "/Groups/a%FFb", nil, 404},
		{"invalid UTF-8 in group id PATCH", "PATCH", "/Groups/a%FFb", patchBody(map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": id}}}), 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(c.method, c.path, c.body)
			if r.Status != c.status || r.Body["schemas"] == nil {
				t.Fatalf("status %d, want %d: %.300s", r.Status, c.status, r.Raw)
			}
		})
	}

	// A request id that the audit log cannot hold (not printable ASCII) is
	// replaced by one of ours; the write succeeds.
	req, err := http.NewRequest("POST", e.srv.URL+"/scim/v2/Users", strings.NewReader(`{"schemas":["`+URNUser+`"],"userName":"rid@example.org"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tokEntra)
	req.Header["X-Request-Id"] = []string{"ab\xffcd"}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if rid := res.Header.Get("X-Request-Id"); res.StatusCode != 201 || rid == "" || rid == "ab\xffcd" {
		t.Errorf("request id %q: %d, X-Request-Id %q", "ab\xffcd", res.StatusCode, rid)
	}
}
