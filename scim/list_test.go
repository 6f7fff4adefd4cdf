package scim

import (
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/store"
)

func TestTranslateFilter(t *testing.T) {
	ts := time.Date(2011, 5, 13, 4, 42, 34, 0, time.UTC)
	cases := []struct {
		def  *resourceDef
		in   string
		want store.Filter
	}{
		{userDef, `userName eq "bjensen"`, store.Cmp{Field: "userName", Op: "eq", Value: "bjensen"}},
		{userDef, `UserName Eq "x"`, store.Cmp{Field: "userName", Op: "eq", Value: "x"}},
		{userDef, `urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J"`, store.Cmp{Field: "userName", Op: "sw", Value: "J"}},
		{userDef, `externalId eq "00aa"`, store.Cmp{Field: "externalId", Op: "eq", Value: "00aa"}},
		{userDef, `name.familyName co "O'Malley"`, store.Cmp{Field: "familyName", Op: "co", Value: "O'Malley"}},
		{userDef, `title pr`, nil},
		{userDef, `active eq false and not (userType ew "x")`, store.And{Left: store.Cmp{Field: "active", Op: "eq", Value: false}, Right: store.Not{F: store.Cmp{Field: "userType", Op: "ew", Value: "x"}}}},
		{userDef, `meta.lastModified gt "2011-05-13T04:42:34Z"`, store.Cmp{Field: "meta.lastModified", Op: "gt", Value: ts}},
		{userDef, `emails[type eq "work" and value co "@example.com"]`, store.ValuePath{Attr: "emails", F: store.And{Left: store.Cmp{Field: "type", Op: "eq", Value: "work"}, Right: store.Cmp{Field: "value", Op: "co", Value: "@example.com"}}}},
		{userDef, `emails.value eq "a@b.c" or emails pr`, store.Or{Left: store.ValuePath{Attr: "emails", F: store.Cmp{Field: "value", Op: "eq", Value: "a@b.c"}}, Right: store.ValuePath{Attr: "emails", F: store.Cmp{Field: "value", Op: "pr"}}}},
		{userDef, `urn:dirsyncd:params:scim:schemas:extension:dirsyncd:2.0:User:firmNumber eq "3856"`, store.Cmp{Field: "firmNumber", Op: "eq", Value: "3856"}},
		{groupDef, `members[value eq "u1"]`, store.ValuePath{Attr: "members", F: store.Cmp{Field: "value", Op: "eq", Value: "u1"}}},
		{groupDef, `displayName eq "Admins" and meta.created le "2011-05-13T04:42:34Z"`, store.And{Left: store.Cmp{Field: "displayName", Op: "eq", Value: "Admins"}, Right: store.Cmp{Field: "meta.created", Op: "le", Value: ts}}},
	}
	for _, c := range cases {
		got, err := parseFilter(c.def, c.in)
		if c.want == nil {
			if err == nil {
				t.Errorf("%s: want invalidFilter, got %#v", c.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got %#v\nwant %#v", c.in, got, c.want)
		}
	}
	for _, bad := range []string{`userName eq`, `userName eq 1`, `active eq "yes"`, `active gt true`, `meta.created gt "yesterday"`, `nosuch eq "x"`, `emails[type eq "work"`, `userName zz "x"`, `emails[emails[type eq "x"]]`} {
		_, err := parseFilter(userDef, bad)
		e, ok := err.(*Error)
		if !ok || e.ScimType != TypeInvalidFilter || e.Status != 400 {
			t.Errorf("%s: want 400 invalidFilter, got %v", bad, err)
		}
	}
}

func TestListPagingSortCount(t *testing.T) { bothStores(t, testListPagingSortCount) }

func testListPagingSortCount(t *testing.T, e *env) {
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, e.createUser(fmt.Sprintf("user%d@example.org", i), map[string]any{"displayName": fmt.Sprintf("D%d", 4-i)}))
	}
	r := e.must(e.do("GET", "/Users?count=0", nil), 200)
	if r.Body["totalResults"] != float64(5) || r.Body["itemsPerPage"] != float64(0) || len(r.Body["Resources"].([]any)) != 0 {
		t.Errorf("count=0: %s", r.Raw)
	}
	r = e.must(e.do("GET", "/Users?sortBy=userName&sortOrder=descending&startIndex=2&count=2&attributes=userName", nil), 200)
	res := r.Body["Resources"].([]any)
	if r.Body["itemsPerPage"] != float64(2) || r.Body["startIndex"] != float64(2) || len(res) != 2 {
		t.Fatalf("page: %s", r.Raw)
	}
	if n := get(res[0].(map[string]any), "userName"); n != "user3@example.org" {
		t.Errorf("descending page starts with %v", n)
	}
	if _, ok := res[0].(map[string]any)["emails"]; ok {
		t.Errorf("attributes=userName returned emails")
	}
	r = e.must(e.do("GET", "/Users?startIndex=5&count=10", nil), 200)
	if r.Body["itemsPerPage"] != float64(1) {
		t.Errorf("last page itemsPerPage %v", r.Body["itemsPerPage"])
	}
	r = e.must(e.do("GET", "/Users?sortBy=displayName&count=1", nil), 200)
	if n := get(r.Body["Resources"].([]any)[0].(map[string]any), "displayName"); n != "D0" {
		t.Errorf("sortBy displayName first %v", n)
	}
	r = e.must(e.do("GET", "/Users?sortBy=meta.created&sortOrder=descending&count=1", nil), 200)
	if id := get(r.Body["Resources"].([]any)[0].(map[string]any), "id"); id != ids[4] {
		t.Errorf("sortBy meta.created descending first %v, want %v", id, ids[4])
	}
	// case-insensitive userName, case-exact externalId
	e.must(e.do("GET", `/Users?filter=userName eq "USER1@EXAMPLE.ORG"`, nil), 200)
	r = e.must(e.do("GET", `/Users?filter=userName eq "USER1@EXAMPLE.ORG"`, nil), 200)
	if r.Body["totalResults"] != float64(1) {
		t.Errorf("case-insensitive userName: %s", r.Raw)
	}
	r = e.must(e.do("GET", `/Users?filter=`+url.QueryEscape(`emails[type eq "work" and value sw "user2"]`), nil), 200)
	if r.Body["totalResults"] != float64(1) {
		t.Errorf("emails value path: %s", r.Raw)
	}
	r = e.must(e.do("GET", `/Users?filter=`+url.QueryEscape(`meta.lastModified gt "2000-01-01T00:00:00Z"`)+"&count=0", nil), 200)
	if r.Body["totalResults"] != float64(5) {
		t.Errorf("meta.lastModified gt: %s", r.Raw)
	}
	r = e.must(e.do("GET", `/Users?excludedAttributes=emails,name,groups`, nil), 200)
	if strings.Contains(string(r.Raw), `"emails"`) || !strings.Contains(string(r.Raw), `"userName"`) {
		t.Errorf("excludedAttributes: %s", r.Raw)
	}
	// POST /.search
	r = e.must(e.do("POST", "/Users/.search", map[string]any{"schemas": []string{URNSearchReq}, "filter": `userName sw "user"`, "count": 2, "attributes": []string{"userName"}}), 200)
	if r.Body["totalResults"] != float64(5) || r.Body["itemsPerPage"] != float64(2) {
		t.Errorf(".search: %s", r.Raw)
	}
	for _, bad := range []string{"/Users?sortOrder=sideways", "/Users?count=abc", "/Users?sortBy=password", `/Users?filter=userName%20eq`} {
		r := e.do("GET", bad, nil)
		if r.Status != 400 {
			t.Errorf("%s: %d %s", bad, r.Status, r.Raw)
		}
	}
}

func TestAuthAndRateLimit(t *testing.T) {
	e := newEnv(t)
	for _, tok := range []string{"", "Bearer wrong", "Basic Zm9vOmJhcg=="} {
		r := e.do("GET", "/Users", nil, "Authorization", tok)
		if r.Status != 401 || r.Body["status"] != "401" || r.Body["schemas"] == nil {
			t.Errorf("auth %q: %d %s", tok, r.Status, r.Raw)
		}
	}
	r := e.do("GET", "/Users", nil, "Authorization", "Bearer "+tokAdmin)
	if r.Status != 403 {
		t.Errorf("admin token: %d", r.Status)
	}
	// the slow client: 1/s, burst 2; time is frozen, so the third is refused.
	for i := 0; i < 2; i++ {
		e.must(e.do("GET", "/ServiceProviderConfig", nil, "Authorization", "Bearer "+tokSlow), 200)
	}
	r = e.do("GET", "/ServiceProviderConfig", nil, "Authorization", "Bearer "+tokSlow)
	// a SCIM error with status "429" and no scimType: RFC 7644 §3.12
	// defines scimType "tooMany" for 400 only.
	_, hasType := r.Body["scimType"]
	if r.Status != 429 || r.Header.Get("Retry-After") != "1" || r.Body["status"] != "429" || r.Body["schemas"] == nil || hasType {
		t.Errorf("rate limit: %d Retry-After=%q %s", r.Status, r.Header.Get("Retry-After"), r.Raw)
	}
	// other clients are not affected
	e.must(e.do("GET", "/ServiceProviderConfig", nil), 200)
	e.now = e.now.Add(1100 * time.Millisecond)
	e.must(e.do("GET", "/ServiceProviderConfig", nil, "Authorization", "Bearer "+tokSlow), 200)

	id := e.createUser("who@example.org", nil)
	var actor string
	if err := e.st.Audit(t.Context(), store.AuditFilter{ObjectID: id}, func(ev auditEvent) error { actor = ev.Actor; return nil }); err != nil {
		t.Fatal(err)
	}
	if actor != "scim:entra" {
		t.Errorf("audit actor %q", actor)
	}
}

func TestDiscovery(t *testing.T) {
	e := newEnv(t)
	r := e.must(e.do("GET", "/ServiceProviderConfig", nil), 200)
	if get(r.Body, "etag", "supported") != true || get(r.Body, "patch", "supported") != true || get(r.Body, "sort", "supported") != true {
		t.Errorf("ServiceProviderConfig: %s", r.Raw)
	}
	r = e.must(e.do("GET", "/Schemas/"+URNDirsyncd, nil), 200)
	if !strings.Contains(string(r.Raw), "firmNumber") {
		t.Errorf("dirsyncd schema: %s", r.Raw)
	}
	r = e.must(e.do("GET", "/ResourceTypes", nil), 200)
	if !strings.Contains(string(r.Raw), URNEnterprise) || !strings.Contains(string(r.Raw), URNDirsyncd) {
		t.Errorf("ResourceTypes: %s", r.Raw)
	}
}
