package scim

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// The fuzz targets below drive the whole handler over a real SQLite store:
// whatever a client sends, the answer is never a 5xx (nor a panic, which
// the test would report).

func fuzzEnv(f *testing.F) (*env, string, string) {
	e := newEnv(f)
	a := e.createUser("fuzz-a@example.org", map[string]any{"externalId": "fz-1", "title": "Clerk",
		"phoneNumbers": []any{map[string]any{"value": "1", "type": "work"}}})
	b := e.createUser("fuzz-b@example.org", nil)
	g := e.createGroup("Fuzzed", a, b)
	return e, a, g
}

func serveNo5xx(t *testing.T, h http.Handler, method, target, body string) {
	t.Helper()
	req := httptest.NewRequest(method, "/", strings.NewReader(body))
	req.URL = &url.URL{Path: strings.SplitN(target, "?", 2)[0]}
	if i := strings.IndexByte(target, '?'); i >= 0 {
		req.URL.RawQuery = target[i+1:]
	}
	req.Header.Set("Authorization", "Bearer "+tokEntra)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code >= 500 {
		t.Fatalf("%s %s with %q: %d %s", method, target, body, rec.Code, rec.Body.String())
	}
}

// FuzzPatchRequest: PATCH bodies against a user and a group.
func FuzzPatchRequest(f *testing.F) {
	for _, s := range []string{
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"False"}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"name.givenName":"x","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager":"m"}}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"members","value":[{"value":"nope"}]}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"members[value eq \"x\"]"},{"op":"replace","path":"displayName","value":""}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"userName","value":"fuzz-b@example.org"}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"emails[type eq \"work\"].value","value":"fuzz-b@example.org"}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"id":"x","schemas":[],"displayName":"Fuzzed","members":[]}}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"externalId","value":"fz-2"}]}`,
		`{}`, `[]`, `null`, `{"schemas":null,"Operations":[null]}`, "\x00",
	} {
		f.Add(s)
	}
	e, user, group := fuzzEnv(f)
	f.Fuzz(func(t *testing.T, body string) {
		serveNo5xx(t, e.h, "PATCH", "/Users/"+user, body)
		serveNo5xx(t, e.h, "PATCH", "/Groups/"+group, body)
		serveNo5xx(t, e.h, "PUT", "/Users/"+user, body)
		serveNo5xx(t, e.h, "POST", "/Groups", body)
	})
}

// FuzzListQuery: filter, sortBy and attributes of list requests.
func FuzzListQuery(f *testing.F) {
	for _, s := range []string{
		`userName eq "fuzz-a@example.org"`, `externalId eq "fz-1"`, `emails[type eq "work"].value eq "x"`,
		`members[value eq "x"]`, `meta.lastModified gt "2011-05-13T04:42:34Z"`, `not (active eq true)`,
		`title pr or (userName sw "f" and displayName co "z")`, `((((`, `userName eq "\x00"`, `a[b[c eq 1]]`,
	} {
		f.Add(s, "userName", "userName,emails", "1", "10")
	}
	e, _, _ := fuzzEnv(f)
	f.Fuzz(func(t *testing.T, filter, sortBy, attrs, start, count string) {
		q := url.Values{"filter": {filter}, "sortBy": {sortBy}, "attributes": {attrs}, "startIndex": {start}, "count": {count}}.Encode()
		serveNo5xx(t, e.h, "GET", "/Users?"+q, "")
		serveNo5xx(t, e.h, "GET", "/Groups?"+q, "")
		x := url.Values{"filter": {filter}, "excludedAttributes": {attrs}, "sortOrder": {sortBy}}.Encode()
		serveNo5xx(t, e.h, "GET", "/Users?"+x, "")
	})
}
