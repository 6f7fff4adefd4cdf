package scim

import (
	"fmt"
	"testing"
)

// TestGroupsOfOtherClientsHidden: a group is owned by the SCIM client that
// provisioned it (source "scim:<client>"). Another SCIM client neither
// finds it (by id, in GET /Groups, by a displayName lookup, which Okta
// uses to match a group it pushes) nor changes it: otherwise Okta, pushing
// a group named like one of Entra's, would take over Entra's group and
// replace its members (and the grants mapping rules give for them).
func TestGroupsOfOtherClientsHidden(t *testing.T) { bothStores(t, testGroupsOfOtherClientsHidden) }

func testGroupsOfOtherClientsHidden(t *testing.T, e *env) {
	okta := []string{"Authorization", "Bearer " + tokOkta}
	a := e.createUser("iso-a@example.org", nil)
	b := e.createUser("iso-b@example.org", nil)
	entraGroup := e.createGroup("Staff", a) // as entra

	r := e.must(e.do("GET", `/Groups?filter=displayName eq "Staff"`, nil, okta...), 200)
	if r.Body["totalResults"] != float64(0) {
		t.Errorf("okta finds entra's group by displayName: %s", r.Raw)
	}
	r = e.must(e.do("GET", "/Groups?excludedAttributes=members", nil, okta...), 200)
	if r.Body["totalResults"] != float64(0) {
		t.Errorf("okta lists entra's group: %s", r.Raw)
	}
	r = e.must(e.do("GET", fmt.Sprintf(`/Groups?filter=members[value eq "%s"]`, a), nil, okta...), 200)
	if r.Body["totalResults"] != float64(0) {
		t.Errorf("okta finds entra's group by member: %s", r.Raw)
	}
	e.must(e.do("GET", "/Groups/"+entraGroup, nil, okta...), 404)
	e.must(e.do("PUT", "/Groups/"+entraGroup, map[string]any{"schemas": []string{URNGroup}, "displayName": "Taken"}, okta...), 404)
	for _, op := range []map[string]any{
		{"op": "add", "path": "members", "value": []any{map[string]any{"value": b}}},              // one-statement path
		{"op": "remove", "path": fmt.Sprintf(`members[value eq "%s"]`, a)},                        // one-statement path
		{"op": "replace", "path": "members", "value": []any{map[string]any{"value": b}}},          // general path
		{"op": "replace", "value": map[string]any{"id": entraGroup, "displayName": "Okta's now"}}, // rename
	} {
		e.must(e.do("PATCH", "/Groups/"+entraGroup, patchBody(op), okta...), 404)
	}
	e.must(e.do("DELETE", "/Groups/"+entraGroup, nil, okta...), 404)

	// Okta's own group of the same name is its own, and entra's is intact.
	mine := e.must(e.do("POST", "/Groups", map[string]any{"schemas": []string{URNGroup}, "displayName": "Staff"}, okta...), 201)
	r = e.must(e.do("GET", `/Groups?filter=displayName eq "Staff"`, nil, okta...), 200)
	if res, _ := r.Body["Resources"].([]any); len(res) != 1 || res[0].(map[string]any)["id"] != mine.Body["id"] {
		t.Errorf("okta's lookup: %s", r.Raw)
	}
	g := e.must(e.do("GET", "/Groups/"+entraGroup, nil), 200)
	ms, _ := g.Body["members"].([]any)
	if g.Body["displayName"] != "Staff" || len(ms) != 1 || ms[0].(map[string]any)["value"] != a {
		t.Errorf("entra's group changed by okta: %s", g.Raw)
	}
}
