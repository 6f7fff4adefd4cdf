package scim

import (
	"net/http/httptest"
	"testing"
	"time"
)

// TestGroupETagFollowsMembers: the members are part of a Group, so a
// member change gives the group a new ETag and meta.lastModified: GET with
// the old If-None-Match answers 200 with the new members (not 304), and a
// PATCH or PUT with the old If-Match is 412. A member change that changes
// nothing (adding a member, removing a non-member) keeps the ETag. Run on
// the store's fast member paths (SCIMLockGroupChangeMembers,
// SCIMAddMembers, SCIMRemoveMembers) and on the generic ones (AddMembers,
// RemoveMembers, ReplaceMembers), which must agree.
func TestGroupETagFollowsMembers(t *testing.T) { bothStores(t, testGroupETagFollowsMembers) }

func testGroupETagFollowsMembers(t *testing.T, e *env) {
	a := e.createUser("etm-a@example.org", nil)
	b := e.createUser("etm-b@example.org", nil)
	plain, err := New(plainBackend{e.st}, testVerifier(t), Options{BaseURL: "https://dirsyncd.test/scim/v2", Now: func() time.Time { return e.now }})
	if err != nil {
		t.Fatal(err)
	}
	slow := httptest.NewServer(stripped(plain))
	t.Cleanup(slow.Close)
	fast := e.srv
	defer func() { e.srv = fast }()

	member := func(id string) []any { return []any{map[string]any{"value": id}} }
	for _, srv := range []struct {
		name string
		s    *httptest.Server
	}{{"fast", fast}, {"generic", slow}} {
		e.srv = srv.s
		gid := e.createGroup("ETag members " + srv.name)
		state := func() (string, string, resp) {
			r := e.must(e.do("GET", "/Groups/"+gid, nil), 200)
			lm, _ := get(r.Body, "meta", "lastModified").(string)
			return r.Header.Get("ETag"), lm, r
		}
		et, lm, _ := state()
		steps := []struct {
			name    string
			method  string
			body    map[string]any
			status  int
			changes bool
			members int
		}{
			{"add a member", "PATCH", patchBody(map[string]any{"op": "add", "path": "members", "value": member(a)}), 204, true, 1},
			{"add the member again", "PATCH", patchBody(map[string]any{"op": "add", "path": "members", "value": member(a)}), 204, false, 1},
			{"add one and remove another", "PATCH", patchBody(map[string]any{"op": "add", "path": "members", "value": member(b)},
				map[string]any{"op": "remove", "path": `members[value eq "` + a + `"]`}), 204, true, 1},
			{"remove a member", "PATCH", patchBody(map[string]any{"op": "remove", "path": `members[value eq "` + b + `"]`}), 204, true, 0},
			{"remove a non-member", "PATCH", patchBody(map[string]any{"op": "remove", "path": `members[value eq "` + b + `"]`}), 204, false, 0},
			{"replace members", "PATCH", patchBody(map[string]any{"op": "replace", "path": "members", "value": member(a)}), 204, true, 1},
			{"replace members with the same", "PATCH", patchBody(map[string]any{"op": "replace", "path": "members", "value": member(a)}), 204, false, 1},
			{"PUT changing only members", "PUT", map[string]any{"schemas": []string{URNGroup}, "displayName": "ETag members " + srv.name, "members": member(b)}, 200, true, 1},
			{"PUT changing nothing", "PUT", map[string]any{"schemas": []string{URNGroup}, "displayName": "ETag members " + srv.name, "members": member(b)}, 200, false, 1},
		}
		for _, st := range steps {
			r := e.must(e.do(st.method, "/Groups/"+gid, st.body, "If-Match", et), st.status)
			net, nlm, g := state()
			if st.method == "PUT" && r.Header.Get("ETag") != net {
				t.Errorf("%s %s: PUT answers ETag %s, GET %s", srv.name, st.name, r.Header.Get("ETag"), net)
			}
			if got := len(g.Body["members"].([]any)); got != st.members {
				t.Errorf("%s %s: %d members, want %d: %s", srv.name, st.name, got, st.members, g.Raw)
			}
			if !st.changes {
				if net != et || nlm != lm {
					t.Errorf("%s %s: ETag %s lastModified %s, want them kept (%s %s)", srv.name, st.name, net, nlm, et, lm)
				}
				continue
			}
			if net == et || nlm == lm {
				t.Errorf("%s %s: ETag %s lastModified %s unchanged", srv.name, st.name, net, nlm)
			}
			if nm := e.do("GET", "/Groups/"+gid, nil, "If-None-Match", et); nm.Status != 200 {
				t.Errorf("%s %s: GET with the old If-None-Match: %d, want 200 with the new members", srv.name, st.name, nm.Status)
			}
			stale := patchBody(map[string]any{"op": "replace", "path": "displayName", "value": "Stale " + srv.name})
			if r := e.do("PATCH", "/Groups/"+gid, stale, "If-Match", et); r.Status != 412 {
				t.Errorf("%s %s: PATCH with the old If-Match: %d, want 412: %s", srv.name, st.name, r.Status, r.Raw)
			}
			et, lm = net, nlm
		}
	}
}
