package scim

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/auth"
	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// TestEveryChangeEnqueuesAndNamesTheClient: each user or membership change
// enqueues exactly the users it affects (point 8), and every audit event a
// SCIM request causes names the client as actor and carries the request id
// (point 3).
func TestEveryChangeEnqueuesAndNamesTheClient(t *testing.T) {
	bothStores(t, testEveryChangeEnqueuesAndNamesTheClient)
}

func testEveryChangeEnqueuesAndNamesTheClient(t *testing.T, e *env) {
	a := e.createUser("ha@example.org", nil)
	b := e.createUser("hb@example.org", nil)
	c := e.createUser("hc@example.org", nil)
	var gid string
	okta := []string{"Authorization", "Bearer " + tokOkta}
	steps := []struct {
		name string
		do   func() resp
		want func() []string
	}{
		{"POST user", func() resp {
			return e.do("POST", "/Users", map[string]any{"schemas": []string{URNUser}, "userName": "hd@example.org"}, okta...)
		}, nil},
		{"PUT user", func() resp {
			return e.do("PUT", "/Users/"+a, map[string]any{"schemas": []string{URNUser}, "userName": "ha@example.org", "title": "t"}, okta...)
		}, func() []string { return []string{a} }},
		{"PATCH user", func() resp {
			return e.do("PATCH", "/Users/"+b, patchBody(map[string]any{"op": "replace", "path": "title", "value": "x"}), okta...)
		}, func() []string { return []string{b} }},
		{"POST group with members", func() resp {
			r := e.do("POST", "/Groups", map[string]any{"schemas": []string{URNGroup}, "displayName": "Hooked",
				"members": []any{map[string]any{"value": a}, map[string]any{"value": b}}}, okta...)
			gid, _ = r.Body["id"].(string)
			return r
		}, func() []string { return []string{a, b} }},
		{"PATCH add member", func() resp {
			return e.do("PATCH", "/Groups/"+gid, patchBody(map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": c}}}), okta...)
		}, func() []string { return []string{c} }},
		{"PATCH remove member", func() resp {
			return e.do("PATCH", "/Groups/"+gid, patchBody(map[string]any{"op": "remove", "path": fmt.Sprintf(`members[value eq "%s"]`, a)}), okta...)
		}, func() []string { return []string{a} }},
		{"PATCH rename only", func() resp {
			return e.do("PATCH", "/Groups/"+gid, patchBody(map[string]any{"op": "replace", "value": map[string]any{"displayName": "Hooked 2"}}), okta...)
		}, func() []string { return nil }},
		{"PUT group members", func() resp { // b, c -> a, c: a in, b out
			return e.do("PUT", "/Groups/"+gid, map[string]any{"schemas": []string{URNGroup}, "displayName": "Hooked 2",
				"members": []any{map[string]any{"value": a}, map[string]any{"value": c}}}, okta...)
		}, func() []string { return []string{a, b} }},
		{"PATCH replace members []", func() resp {
			return e.do("PATCH", "/Groups/"+gid, patchBody(map[string]any{"op": "replace", "path": "members", "value": []any{}}), okta...)
		}, func() []string { return []string{a, c} }},
		{"PATCH add member list", func() resp {
			return e.do("PATCH", "/Groups/"+gid, patchBody(map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": b}}}), okta...)
		}, func() []string { return []string{b} }},
		{"DELETE group", func() resp { return e.do("DELETE", "/Groups/"+gid, nil, okta...) }, func() []string { return []string{b} }},
		{"DELETE user", func() resp { return e.do("DELETE", "/Users/"+c, nil, okta...) }, func() []string { return []string{c} }},
	}
	for _, s := range steps {
		e.enq.Reset()
		seqBefore := lastSeq(t, e.st)
		r := s.do()
		if r.Status >= 300 {
			t.Fatalf("%s: %d %s", s.name, r.Status, r.Raw)
		}
		want := []string{}
		if s.want == nil {
			want = []string{r.Body["id"].(string)}
		} else if w := s.want(); w != nil {
			want = w
		}
		got := slices.Clone(e.enq.IDs())
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(slices.Compact(got), want) {
			t.Errorf("%s: enqueued %v, want %v", s.name, got, want)
		}
		rid := r.Header.Get("X-Request-Id")
		n := 0
		if err := e.st.Audit(context.Background(), store.AuditFilter{AfterSeq: seqBefore}, func(ev audit.Event) error {
			n++
			if ev.Actor != "scim:okta" || ev.RequestID != rid || rid == "" {
				t.Errorf("%s: audit event %s by %q request %q, want scim:okta and %q", s.name, ev.Action, ev.Actor, ev.RequestID, rid)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Errorf("%s: no audit event", s.name)
		}
	}
}

func lastSeq(t *testing.T, st store.Store) int64 {
	t.Helper()
	var seq int64
	if err := st.Audit(context.Background(), store.AuditFilter{}, func(ev audit.Event) error { seq = ev.Seq; return nil }); err != nil {
		t.Fatal(err)
	}
	return seq
}

// TestGroupsOfOtherSourcesHidden: LDAP (or any non-SCIM) groups are not
// SCIM resources: not listed, not found by filter, 404 by id.
func TestGroupsOfOtherSourcesHidden(t *testing.T) { bothStores(t, testGroupsOfOtherSourcesHidden) }

func testGroupsOfOtherSourcesHidden(t *testing.T, e *env) {
	ldap := directory.Group{Source: "ldap:corp", SourceKey: "cn=staff", DisplayName: "Staff"}
	if err := e.st.Update(context.Background(), audit.Meta{Actor: "ldap:corp"}, func(ctx context.Context, tx store.Tx) error {
		return tx.CreateGroup(ctx, &ldap)
	}); err != nil {
		t.Fatal(err)
	}
	mine := e.createGroup("Staff") // same name, SCIM source
	r := e.must(e.do("GET", "/Groups?excludedAttributes=members", nil), 200)
	res, _ := r.Body["Resources"].([]any)
	if r.Body["totalResults"] != float64(1) || len(res) != 1 || res[0].(map[string]any)["id"] != mine {
		t.Errorf("GET /Groups lists other sources' groups: %s", r.Raw)
	}
	r = e.must(e.do("GET", `/Groups?filter=displayName eq "staff"`, nil), 200)
	if r.Body["totalResults"] != float64(1) {
		t.Errorf("filter finds other sources' groups: %s", r.Raw)
	}
	r = e.must(e.do("GET", `/Groups?filter=displayName eq "staff" or id eq "`+ldap.ID+`"&count=0`, nil), 200)
	if r.Body["totalResults"] != float64(1) {
		t.Errorf("an or-filter escapes the source restriction: %s", r.Raw)
	}
	e.must(e.do("GET", "/Groups/"+ldap.ID, nil), 404)
	e.must(e.do("PATCH", "/Groups/"+ldap.ID, patchBody(map[string]any{"op": "replace", "path": "displayName", "value": "x"})), 404)
	e.must(e.do("GET", `/Groups?filter=source eq "ldap:corp"`, nil), 400)
}

// TestTokenWithAdminScopesOwnsItsSCIMResources: a token with scim and
// admin scopes (the development token) is audited as "admin:<name>", but
// what it provisions is still a SCIM resource of source "scim:<name>":
// its groups are visible to SCIM and its user links are SCIM links.
func TestTokenWithAdminScopesOwnsItsSCIMResources(t *testing.T) {
	e := newEnv(t)
	v, err := auth.NewVerifier([]config.TokenConfig{{Name: "dev", Token: config.NewSecret("dev-token"), Scopes: []string{"scim", "admin:read"}}})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(e.st, v, Options{BaseURL: "https://dirsyncd.test/scim/v2"})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(stripped(h))
	t.Cleanup(e.srv.Close)
	dev := []string{"Authorization", "Bearer dev-token"}
	r := e.must(e.do("POST", "/Users", map[string]any{"schemas": []string{URNUser}, "userName": "dev@example.org", "externalId": "dev-1"}, dev...), 201)
	uid := r.Body["id"].(string)
	if u, err := e.st.FindUserByLink(context.Background(), "scim:dev", "dev-1"); err != nil || u.ID != uid {
		t.Errorf("user link: %v %v", err, u.ID)
	}
	r = e.must(e.do("POST", "/Groups", map[string]any{"schemas": []string{URNGroup}, "displayName": "Dev group"}, dev...), 201)
	gid := r.Body["id"].(string)
	e.must(e.do("GET", "/Groups/"+gid, nil, dev...), 200)
	if l := e.must(e.do("GET", "/Groups", nil, dev...), 200); l.Body["totalResults"] != float64(1) {
		t.Errorf("GET /Groups: %s", l.Raw)
	}
	e.must(e.do("DELETE", "/Users/"+uid, nil, dev...), 204)
	links, err := e.st.ListUserLinks(context.Background(), uid)
	if err != nil || len(links) != 1 || links[0].GoneAt == nil {
		t.Errorf("DELETE did not mark the SCIM link gone: %v %+v", err, links)
	}
	var actors []string
	_ = e.st.Audit(context.Background(), store.AuditFilter{ObjectID: gid}, func(ev audit.Event) error { actors = append(actors, ev.Actor); return nil })
	if len(actors) == 0 || actors[0] != "admin:dev" {
		t.Errorf("audit actors %v, want admin:dev", actors)
	}
}
