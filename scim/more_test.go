package scim

import (
	"context"
	"strings"
	"testing"

	"github.com/dirsyncd/dirsyncd/store"
)

func TestGroupETagsAndPut(t *testing.T) { bothStores(t, testGroupETagsAndPut) }

func testGroupETagsAndPut(t *testing.T, e *env) {
	a := e.createUser("ga@example.org", nil)
	gid := e.createGroup("Finance")
	r := e.must(e.do("GET", "/Groups/"+gid, nil), 200)
	et := r.Header.Get("ETag")
	if et == "" || get(r.Body, "meta", "version") != et {
		t.Fatalf("group ETag %q body %s", et, r.Raw)
	}
	if nm := e.do("GET", "/Groups/"+gid, nil, "If-None-Match", et); nm.Status != 304 {
		t.Errorf("If-None-Match on group: %d", nm.Status)
	}
	body := map[string]any{"schemas": []string{URNGroup}, "displayName": "Finance Team", "members": []any{map[string]any{"value": a}}}
	e.must(e.do("PUT", "/Groups/"+gid, body, "If-Match", `W/"99"`), 412)
	r = e.must(e.do("PUT", "/Groups/"+gid, body, "If-Match", et), 200)
	if r.Body["displayName"] != "Finance Team" || len(r.Body["members"].([]any)) != 1 {
		t.Errorf("PUT group: %s", r.Raw)
	}
	// a group of another source is invisible to SCIM
	e.must(e.do("GET", "/Groups/nope", nil), 404)
}

func TestPasswordNeverStored(t *testing.T) { bothStores(t, testPasswordNeverStored) }

func testPasswordNeverStored(t *testing.T, e *env) {
	id := e.createUser("pw@example.org", map[string]any{"password": "P@ssw0rd-1"})
	e.must(e.do("PATCH", "/Users/"+id, patchBody(
		map[string]any{"op": "replace", "path": "password", "value": "P@ssw0rd-2"},
		map[string]any{"op": "replace", "value": map[string]any{"password": "P@ssw0rd-3", "title": "t"}},
	)), 200)
	e.must(e.do("PUT", "/Users/"+id, map[string]any{"schemas": []string{URNUser}, "userName": "pw@example.org", "password": "P@ssw0rd-4"}), 200)
	u, err := e.st.GetUser(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var leaked []string
	_ = e.st.Audit(context.Background(), storeAuditAll(), func(ev auditEvent) error {
		if strings.Contains(string(ev.Before)+string(ev.After), "P@ssw0rd") {
			leaked = append(leaked, ev.Action)
		}
		return nil
	})
	if strings.Contains(string(u.Attrs), "P@ssw0rd") || len(leaked) > 0 {
		t.Errorf("password stored: attrs %s, audit events %v", u.Attrs, leaked)
	}
	r := e.must(e.do("GET", "/Users/"+id, nil), 200)
	if strings.Contains(string(r.Raw), "assword") {
		t.Errorf("password returned: %s", r.Raw)
	}
}

func TestProjectionOfExtensions(t *testing.T) {
	e := newEnv(t)
	id := e.createUser("px@example.org", map[string]any{
		"schemas":     []string{URNUser, URNEnterprise, URNDirsyncd},
		URNEnterprise: map[string]any{"department": "Crime", "costCenter": "42"},
		URNDirsyncd:   map[string]any{"firmNumber": "3856"},
	})
	r := e.must(e.do("GET", "/Users/"+id+"?attributes="+URNEnterprise+":department,userName", nil), 200)
	if get(r.Body, URNEnterprise, "department") != "Crime" || get(r.Body, URNEnterprise, "costCenter") != nil || r.Body[URNDirsyncd] != nil || r.Body["emails"] != nil {
		t.Errorf("attributes with an extension attribute: %s", r.Raw)
	}
	r = e.must(e.do("GET", "/Users/"+id+"?excludedAttributes="+URNDirsyncd+",emails", nil), 200)
	if r.Body[URNDirsyncd] != nil || r.Body["emails"] != nil || get(r.Body, URNEnterprise, "costCenter") != "42" {
		t.Errorf("excludedAttributes with an extension: %s", r.Raw)
	}
	r = e.must(e.do("GET", `/Users?filter=`+URNDirsyncd+`:firmNumber%20eq%20%223856%22&sortBy=meta.lastModified&sortOrder=descending`, nil), 200)
	if r.Body["totalResults"] != float64(1) {
		t.Errorf("filter on the dirsyncd extension: %s", r.Raw)
	}
}

// TestRolesAreReadOnly: roles and offices sent in a POST or PUT are
// ignored (RFC 7643 readOnly): they never become grants nor stored
// attributes; access comes from mapping and reconciliation only.
func TestRolesAreReadOnly(t *testing.T) {
	e := newEnv(t)
	ext := map[string]any{"firmNumber": "3856", "roles": []any{map[string]any{"service": "ccms", "role": "admin"}}, "offices": []any{"0Q731M"}}
	id := e.createUser("ro@example.org", map[string]any{"schemas": []string{URNUser, URNDirsyncd}, URNDirsyncd: ext})
	e.must(e.do("PUT", "/Users/"+id, map[string]any{"schemas": []string{URNUser, URNDirsyncd}, "userName": "ro@example.org", URNDirsyncd: ext}), 200)
	gs, err := e.st.ListGrants(context.Background(), store.GrantQuery{UserID: id})
	u, err2 := e.st.GetUser(context.Background(), id)
	if err != nil || err2 != nil || len(gs) != 0 || strings.Contains(string(u.Attrs), "roles") || strings.Contains(string(u.Attrs), "0Q731M") {
		t.Errorf("client-sent roles kept: grants %v attrs %s (%v %v)", gs, u.Attrs, err, err2)
	}
	r := e.must(e.do("GET", "/Users/"+id, nil), 200)
	if roles, _ := get(r.Body, URNDirsyncd, "roles").([]any); len(roles) != 0 || get(r.Body, URNDirsyncd, "firmNumber") != "3856" {
		t.Errorf("GET after client-sent roles: %s", r.Raw)
	}
}
