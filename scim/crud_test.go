package scim

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

func TestUserCreateGetLocationETag(t *testing.T) { bothStores(t, testUserCreateGetLocationETag) }

func testUserCreateGetLocationETag(t *testing.T, e *env) {
	r := e.must(e.do("POST", "/Users", map[string]any{
		"schemas":  []string{URNUser, URNEnterprise, URNDirsyncd},
		"userName": "Ada.Lovelace@example.org", "externalId": "ext-1", "password": "Sup3r-secret!",
		"name":         map[string]any{"givenName": "Ada", "familyName": "Lovelace", "middleName": "K"},
		"emails":       []any{map[string]any{"value": "ada@example.org", "type": "work", "primary": true}},
		"phoneNumbers": []any{map[string]any{"value": "+44 20 7946 0000", "type": "work"}},
		URNEnterprise:  map[string]any{"department": "Civil", "manager": map[string]any{"value": "m-1"}},
		URNDirsyncd:    map[string]any{"firmNumber": "3856", "userType": "provider"},
	}), 201)
	id := r.Body["id"].(string)
	loc := "https://dirsyncd.test/scim/v2/Users/" + id
	if got := r.Header.Get("Location"); got != loc {
		t.Errorf("Location %q, want %q", got, loc)
	}
	if got := get(r.Body, "meta", "location"); got != loc {
		t.Errorf("meta.location %v, want %q", got, loc)
	}
	if strings.Contains(string(r.Raw), "Sup3r-secret") || strings.Contains(string(r.Raw), "password") {
		t.Errorf("password returned: %s", r.Raw)
	}
	et := r.Header.Get("ETag")
	if et != `W/"1"` || get(r.Body, "meta", "version") != et {
		t.Errorf("ETag %q meta.version %v", et, get(r.Body, "meta", "version"))
	}
	u, err := e.st.GetUser(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(u.Attrs), "Sup3r") {
		t.Errorf("password stored: %s", u.Attrs)
	}
	if u.FirmNumber != "3856" || u.UserType != "provider" || u.Email != "ada@example.org" || u.GivenName != "Ada" || u.ExternalID != "ext-1" {
		t.Errorf("stored user %+v", u)
	}
	if got := e.enq.IDs(); !slices.Equal(got, []string{id}) {
		t.Errorf("enqueued %v", got)
	}

	g := e.must(e.do("GET", "/Users/"+id, nil), 200)
	for path, want := range map[string]any{
		"name.middleName":             "K",
		"userName":                    "Ada.Lovelace@example.org",
		URNEnterprise + ".department": "Civil",
	} {
		parts := strings.SplitN(path, ".", 2)
		if strings.HasPrefix(path, "urn:") {
			parts = []string{URNEnterprise, "department"}
		}
		if got := get(g.Body, parts...); got != want {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
	}
	if got := get(g.Body, URNDirsyncd, "firmNumber"); got != "3856" {
		t.Errorf("firmNumber %v", got)
	}
	// If-None-Match with the current ETag: 304, no body.
	nm := e.do("GET", "/Users/"+id, nil, "If-None-Match", et)
	if nm.Status != 304 || len(nm.Raw) != 0 {
		t.Errorf("If-None-Match: %d %s", nm.Status, nm.Raw)
	}
	e.must(e.do("GET", "/Users/"+id, nil, "If-None-Match", `W/"99"`), 200)
}

func TestUserUniqueness409(t *testing.T) { bothStores(t, testUserUniqueness409) }

func testUserUniqueness409(t *testing.T, e *env) {
	e.createUser("bob@example.org", nil)
	for _, body := range []map[string]any{
		{"schemas": []string{URNUser}, "userName": "BOB@example.org"},
		{"schemas": []string{URNUser}, "userName": "other", "emails": []any{map[string]any{"value": "Bob@Example.org", "primary": true}}},
	} {
		r := e.must(e.do("POST", "/Users", body), 409)
		if r.Body["scimType"] != "uniqueness" || r.Body["status"] != "409" {
			t.Errorf("409 body %s", r.Raw)
		}
	}
	e.createGroup("Admins")
	r := e.must(e.do("POST", "/Groups", map[string]any{"schemas": []string{URNGroup}, "displayName": "admins"}), 409)
	if r.Body["scimType"] != "uniqueness" {
		t.Errorf("group 409 body %s", r.Raw)
	}
}

func TestPutReplacesAndIfMatch(t *testing.T) { bothStores(t, testPutReplacesAndIfMatch) }

func testPutReplacesAndIfMatch(t *testing.T, e *env) {
	id := e.createUser("carol@example.org", map[string]any{"title": "Paralegal", "displayName": "Carol"})
	put := map[string]any{"schemas": []string{URNUser}, "userName": "carol@example.org", "active": true,
		"name": map[string]any{"givenName": "Carol"}}
	// stale If-Match: 412, nothing changed
	e.must(e.do("PUT", "/Users/"+id, put, "If-Match", `W/"7"`), 412)
	r := e.must(e.do("PUT", "/Users/"+id, put, "If-Match", `W/"1"`), 200)
	if r.Body["title"] != nil || r.Body["displayName"] != nil || r.Body["emails"] != nil {
		t.Errorf("PUT did not replace: %s", r.Raw)
	}
	if r.Header.Get("ETag") != `W/"2"` {
		t.Errorf("ETag after PUT %q", r.Header.Get("ETag"))
	}
	e.must(e.do("PATCH", "/Users/"+id, patchBody(map[string]any{"op": "replace", "path": "title", "value": "x"}), "If-Match", `W/"1"`), 412)
	e.must(e.do("DELETE", "/Users/"+id, nil, "If-Match", `W/"1"`), 412)
	e.must(e.do("GET", "/Users/"+id, nil), 200)
}

func grantFor(t *testing.T, st store.Store, userID string) {
	t.Helper()
	ctx := context.Background()
	err := st.Update(ctx, audit.Meta{Actor: "test"}, func(ctx context.Context, tx store.Tx) error {
		if err := tx.PutFirm(ctx, &directory.Firm{Number: "3856", Name: "Firm", Type: directory.FirmLegalServicesProvider, Enabled: true}); err != nil {
			return err
		}
		if err := tx.PutOffice(ctx, &directory.Office{Code: "0Q731M", FirmNumber: "3856", Active: true}); err != nil {
			return err
		}
		return tx.PutGrant(ctx, &directory.Grant{UserID: userID, FirmNumber: "3856", Service: "ccms", Role: "case-management",
			Offices: []string{"0Q731M"}, Provenance: []directory.Provenance{{Kind: directory.ProvManual, Ref: "test"}}})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestDeprovisioning(t *testing.T) { bothStores(t, testDeprovisioning) }

func testDeprovisioning(t *testing.T, e *env) {
	ctx := context.Background()
	id := e.createUser("dan@example.org", map[string]any{"externalId": "dan-ext"})
	grantFor(t, e.st, id)
	g := e.must(e.do("GET", "/Users/"+id, nil), 200)
	roles, _ := get(g.Body, URNDirsyncd, "roles").([]any)
	if len(roles) != 1 || fmt.Sprint(get(g.Body, URNDirsyncd, "offices")) != "[0Q731M]" {
		t.Fatalf("effective roles/offices not shown: %s", g.Raw)
	}
	e.enq.Reset()
	r := e.must(e.do("PATCH", "/Users/"+id, patchBody(map[string]any{"op": "Replace", "path": "active", "value": "False"})), 200)
	if r.Body["active"] != false {
		t.Errorf("active after deprovision: %v", r.Body["active"])
	}
	gs, _ := e.st.ListGrants(ctx, store.GrantQuery{UserID: id})
	if len(gs) != 0 {
		t.Errorf("grants left after active=false: %v", gs)
	}
	if !slices.Contains(e.enq.IDs(), id) {
		t.Errorf("not enqueued")
	}
	// still visible with active:false
	lst := e.must(e.do("GET", `/Users?filter=userName eq "dan@example.org"`, nil), 200)
	if lst.Body["totalResults"] != float64(1) {
		t.Errorf("inactive user not listed: %s", lst.Raw)
	}

	// DELETE: 404 afterwards, record kept, re-create re-links.
	grantFor(t, e.st, id)
	e.must(e.do("DELETE", "/Users/"+id, nil), 204)
	e.must(e.do("GET", "/Users/"+id, nil), 404)
	e.must(e.do("DELETE", "/Users/"+id, nil), 404)
	old, err := e.st.GetUser(ctx, id)
	if err != nil || old.DeletedAt == nil {
		t.Fatalf("record not kept: %v %+v", err, old)
	}
	if gs, _ := e.st.ListGrants(ctx, store.GrantQuery{UserID: id}); len(gs) != 0 {
		t.Errorf("grants left after DELETE: %v", gs)
	}
	lst = e.must(e.do("GET", `/Users?filter=userName eq "dan@example.org"`, nil), 200)
	if lst.Body["totalResults"] != float64(0) {
		t.Errorf("deleted user listed: %s", lst.Raw)
	}
	nid := e.createUser("dan@example.org", map[string]any{"externalId": "dan-ext"})
	if nid == id {
		t.Fatal("re-created user reused the deleted id")
	}
	u, err := e.st.FindUserByLink(ctx, "scim:entra", "dan-ext")
	if err != nil || u.ID != nid {
		t.Errorf("link not moved to the new user: %v %v", err, u.ID)
	}
}

func TestGroupMembersAndExcludedAttributes(t *testing.T) {
	bothStores(t, testGroupMembersAndExcludedAttributes)
}

func testGroupMembersAndExcludedAttributes(t *testing.T, e *env) {
	a := e.createUser("a@example.org", nil)
	b := e.createUser("b@example.org", nil)
	c := e.createUser("c@example.org", nil)
	gid := e.createGroup("Case workers", a, b)
	r := e.must(e.do("GET", "/Groups/"+gid+"?excludedAttributes=members", nil), 200)
	if _, ok := r.Body["members"]; ok || r.Body["displayName"] != "Case workers" {
		t.Errorf("excludedAttributes=members: %s", r.Raw)
	}
	e.enq.Reset()
	e.must(e.do("PATCH", "/Groups/"+gid, patchBody(
		map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": c}}},
		map[string]any{"op": "remove", "path": fmt.Sprintf(`members[value eq "%s"]`, a)},
	)), 204)
	got := members(t, e, gid)
	if !slices.Equal(got, sorted(b, c)) {
		t.Errorf("members %v", got)
	}
	if ids := e.enq.IDs(); !slices.Equal(ids, []string{c, a}) {
		t.Errorf("enqueued %v", ids)
	}
	// one bad op: nothing applied
	e.must(e.do("PATCH", "/Groups/"+gid, patchBody(
		map[string]any{"op": "remove", "path": "members", "value": []any{map[string]any{"value": b}}},
		map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": "no-such-user"}}},
	)), 400)
	if got := members(t, e, gid); !slices.Equal(got, sorted(b, c)) {
		t.Errorf("half-applied PATCH: members %v", got)
	}
	lst := e.must(e.do("GET", fmt.Sprintf(`/Groups?filter=members[value eq "%s"]&excludedAttributes=members`, c), nil), 200)
	if lst.Body["totalResults"] != float64(1) {
		t.Errorf("members filter: %s", lst.Raw)
	}
	e.must(e.do("DELETE", "/Groups/"+gid, nil), 204)
	e.must(e.do("GET", "/Groups/"+gid, nil), 404)
}

func sorted(ids ...string) []string { s := slices.Clone(ids); slices.Sort(s); return s }

func members(t *testing.T, e *env, gid string) []string {
	t.Helper()
	ids, err := e.st.ListGroupMembers(context.Background(), gid, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}
