package scim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// plainBackend hides the store's SCIM-shaped reads (SCIMListUsers,
// SCIMUserExtras, SCIMMissingUsers), so that the handler takes the generic
// store.Reader path.
type plainBackend struct{ store.Store }

func (b plainBackend) Update(ctx context.Context, m audit.Meta, fn func(ctx context.Context, tx store.Tx) error) error {
	return b.Store.Update(ctx, m, func(ctx context.Context, tx store.Tx) error { return fn(ctx, plainTx{tx}) })
}

type plainTx struct{ store.Tx }

// TestStoreFastPathsAnswerAlike: every response is byte for byte the same
// whether the handler uses the store's SCIM-shaped reads or the generic
// ones: totals without a count query, grants and groups of a page in two
// queries, member checks in one.
func TestStoreFastPathsAnswerAlike(t *testing.T) { bothStores(t, testStoreFastPathsAnswerAlike) }

func testStoreFastPathsAnswerAlike(t *testing.T, e *env) {
	if _, ok := any(e.st).(pageLister); !ok {
		t.Fatal("the store does not offer SCIMListUsers")
	}
	if _, ok := any(e.st).(extrasReader); !ok {
		t.Fatal("the store does not offer SCIMUserExtras")
	}
	if _, ok := any(e.st).(pageExtrasLister); !ok {
		t.Fatal("the store does not offer SCIMListUsersExtras")
	}
	var ids []string
	for i := 0; i < 5; i++ {
		extra := map[string]any{"displayName": fmt.Sprintf("FP %d", i)}
		switch i {
		case 0: // several e-mails, kept in their order
			extra["emails"] = []any{map[string]any{"value": "fp0-z@example.org", "type": "home"},
				map[string]any{"value": "fp0@example.org", "type": "work", "primary": true}, map[string]any{"value": "fp0-a@example.org"}}
		case 3: // none
			extra["emails"] = []any{}
		}
		ids = append(ids, e.createUser(fmt.Sprintf("fp%d@example.org", i), extra))
	}
	grantFor(t, e.st, ids[0])
	grantFor(t, e.st, ids[2])
	// A second grant (all offices, ordered before the first) for ids[0].
	if err := e.st.Update(context.Background(), audit.Meta{Actor: "test"}, func(ctx context.Context, tx store.Tx) error {
		return tx.PutGrant(ctx, &directory.Grant{UserID: ids[0], FirmNumber: "3856", Service: "ccms", Role: "bill-preparation",
			AllOffices: true, Provenance: []directory.Provenance{{Kind: directory.ProvManual, Ref: "test"}}})
	}); err != nil {
		t.Fatal(err)
	}
	e.createGroup("FP one", ids[0], ids[1])
	gone := e.createGroup("FP gone", ids[0])
	e.createGroup("FP two", ids[0], ids[2])
	e.must(e.do("DELETE", "/Groups/"+gone, nil), 204)
	ldap := directory.Group{Source: "ldap:corp", SourceKey: "cn=fp", DisplayName: "FP ldap"}
	if err := e.st.Update(context.Background(), audit.Meta{Actor: "ldap:corp"}, func(ctx context.Context, tx store.Tx) error {
		if err := tx.CreateGroup(ctx, &ldap); err != nil {
			return err
		}
		return tx.AddMembers(ctx, ldap.ID, []string{ids[1]})
	}); err != nil {
		t.Fatal(err)
	}
	e.must(e.do("DELETE", "/Users/"+ids[4], nil), 204)

	plain, err := New(plainBackend{e.st}, testVerifier(t), Options{BaseURL: "https://dirsyncd.test/scim/v2", Now: func() time.Time { return e.now }})
	if err != nil {
		t.Fatal(err)
	}
	fast := e.srv
	slow := httptest.NewServer(stripped(plain))
	t.Cleanup(slow.Close)
	for _, path := range []string{
		"/Users/" + ids[0], "/Users/" + ids[1],
		`/Users?filter=userName eq "fp0@example.org"`, `/Users?filter=userName eq "nobody@example.org"`,
		`/Users?filter=userName sw "fp"`, "/Users", "/Users?count=0", "/Users?count=2", "/Users?startIndex=3&count=2",
		"/Users?startIndex=4&count=2", "/Users?startIndex=5&count=2", "/Users?startIndex=9&count=2",
		"/Users?count=4", "/Users?startIndex=2&count=3&sortBy=displayName&sortOrder=descending",
		"/Users?excludedAttributes=groups", "/Users?attributes=" + URNDirsyncd + ":roles",
	} {
		e.srv = fast
		a := e.must(e.do("GET", path, nil), 200)
		e.srv = slow
		b := e.must(e.do("GET", path, nil), 200)
		if !bytes.Equal(a.Raw, b.Raw) {
			t.Errorf("GET %s differs:\n fast %s\n slow %s", path, a.Raw, b.Raw)
		}
	}
	// PUT and PATCH through both paths leave the same stored user.
	for i, srv := range []*httptest.Server{fast, slow} {
		e.srv = srv
		e.must(e.do("PATCH", "/Users/"+ids[0], patchBody(map[string]any{"op": "replace", "path": "title", "value": fmt.Sprint("T", i)})), 200)
		e.must(e.do("PUT", "/Users/"+ids[3], map[string]any{"schemas": []string{URNUser}, "userName": "fp3@example.org",
			"emails": []any{map[string]any{"value": fmt.Sprintf("fp3-%d@example.org", i)}}}), 200)
		e.srv = fast
		a := e.must(e.do("GET", "/Users/"+ids[0], nil), 200)
		if fmt.Sprint(a.Body["emails"]) != "[map[type:home value:fp0-z@example.org] map[primary:true type:work value:fp0@example.org] map[value:fp0-a@example.org]]" {
			t.Errorf("e-mails after PATCH (path %d): %v", i, a.Body["emails"])
		}
		b := e.must(e.do("GET", "/Users/"+ids[3], nil), 200)
		if fmt.Sprint(b.Body["emails"]) != fmt.Sprintf("[map[value:fp3-%d@example.org]]", i) {
			t.Errorf("e-mails after PUT (path %d): %v", i, b.Body["emails"])
		}
	}
	g := e.createGroup("FP target")
	for _, members := range [][]string{{ids[4]}, {ids[3], "no-such-user"}, {ids[3], ids[1]}} {
		var vals []any
		for _, m := range members {
			vals = append(vals, map[string]any{"value": m})
		}
		body := patchBody(map[string]any{"op": "add", "path": "members", "value": vals})
		e.srv = slow
		b := e.do("PATCH", "/Groups/"+g, body)
		e.must(e.do("PATCH", "/Groups/"+g, patchBody(map[string]any{"op": "replace", "path": "members", "value": []any{}})), 204)
		e.srv = fast
		a := e.do("PATCH", "/Groups/"+g, body)
		if a.Status != b.Status || !bytes.Equal(a.Raw, b.Raw) {
			t.Errorf("PATCH add %v differs: fast %d %s, slow %d %s", members, a.Status, a.Raw, b.Status, b.Raw)
		}
	}
	e.srv = fast
}

// TestSCIMUpdateUserMatchesUpdateUser: the store's SCIM update path
// (SCIMLockUser + SCIMUpdateUser) gives UpdateUser's outcome, version,
// stored e-mails and audit events, step by step on twin users.
func TestSCIMUpdateUserMatchesUpdateUser(t *testing.T) {
	bothStores(t, testSCIMUpdateUserMatchesUpdateUser)
}

func testSCIMUpdateUserMatchesUpdateUser(t *testing.T, e *env) {
	ctx := context.Background()
	ids := map[string]string{}
	for _, n := range []string{"twa", "twb"} {
		ids[n] = e.createUser(n+"@example.org", map[string]any{"displayName": "Twin"})
	}
	e.createUser("taken@example.org", nil)
	steps := []struct {
		name   string
		expect int64
		change func(u *directory.User, n string)
		want   error
	}{
		{"display name", 0, func(u *directory.User, n string) { u.DisplayName = "Twin 2" }, nil},
		{"no change", 0, func(u *directory.User, n string) {}, nil},
		{"second e-mail", 0, func(u *directory.User, n string) {
			u.Emails = append(u.Emails, directory.Email{Value: n + "-home@example.org", Type: "home"})
		}, nil},
		{"userName case only", 0, func(u *directory.User, n string) { u.UserName = strings.ToUpper(n) + "@example.org" }, nil},
		{"userName taken", 0, func(u *directory.User, n string) { u.UserName = "TAKEN@example.org" }, store.ErrConflict},
		{"e-mail taken", 0, func(u *directory.User, n string) {
			u.Email = "Taken@Example.org"
			u.Emails = []directory.Email{{Value: "Taken@Example.org", Primary: true}}
		}, store.ErrConflict},
		{"stale version", 1, func(u *directory.User, n string) { u.DisplayName = "stale" }, store.ErrVersionMismatch},
		{"matching version", 4, func(u *directory.User, n string) { u.Active = false }, nil},
	}
	for _, s := range steps {
		outcome := map[string]error{}
		events := map[string]int{}
		for _, n := range []string{"twa", "twb"} {
			before := lastSeq(t, e.st)
			err := e.st.Update(ctx, audit.Meta{Actor: "scim:test"}, func(ctx context.Context, tx store.Tx) error {
				if n == "twa" {
					u, err := tx.GetUser(ctx, ids[n])
					if err != nil {
						return err
					}
					s.change(&u, n)
					return tx.UpdateUser(ctx, &u, s.expect)
				}
				l, ok := tx.(userLocker)
				if !ok {
					t.Fatal("the store's transaction has no SCIM update path")
				}
				cur, err := l.SCIMLockUser(ctx, ids[n])
				if err != nil {
					return err
				}
				u := cur
				u.Emails = slices.Clone(cur.Emails)
				s.change(&u, n)
				return l.SCIMUpdateUser(ctx, &u, cur, s.expect)
			})
			outcome[n] = err
			_ = e.st.Audit(ctx, store.AuditFilter{AfterSeq: before}, func(ev audit.Event) error { events[n]++; return nil })
		}
		for n, err := range outcome {
			if (s.want == nil) != (err == nil) || (s.want != nil && !errors.Is(err, s.want)) {
				t.Errorf("%s: %s: error %v, want %v", s.name, n, err, s.want)
			}
		}
		if events["twa"] != events["twb"] {
			t.Errorf("%s: audit events %v", s.name, events)
		}
		a, _ := e.st.GetUser(ctx, ids["twa"])
		b, _ := e.st.GetUser(ctx, ids["twb"])
		if a.Version != b.Version || a.Active != b.Active || a.DisplayName != b.DisplayName || len(a.Emails) != len(b.Emails) ||
			strings.ReplaceAll(strings.ToLower(a.UserName), "twa", "twb") != strings.ToLower(b.UserName) ||
			strings.ReplaceAll(fmt.Sprint(a.Emails), "twa", "twb") != fmt.Sprint(b.Emails) {
			t.Errorf("%s: stored users differ:\n UpdateUser     %+v\n SCIMUpdateUser %+v", s.name, a, b)
		}
	}
}

// TestWriteResponseMatchesGet: the response of a PUT or PATCH, rendered
// from the grants and groups read with the locked user
// (SCIMLockUserExtras), is the representation a GET returns right after,
// also for a deactivation, whose response shows the grants it revoked gone.
func TestWriteResponseMatchesGet(t *testing.T) { bothStores(t, testWriteResponseMatchesGet) }

func testWriteResponseMatchesGet(t *testing.T, e *env) {
	if _, ok := any(plainTx{}).(extrasLocker); ok {
		t.Fatal("plainTx exposes SCIMLockUserExtras")
	}
	a := e.createUser("wr-a@example.org", nil)
	b := e.createUser("wr-b@example.org", nil)
	grantFor(t, e.st, a)
	grantFor(t, e.st, b)
	e.createGroup("WR one", a, b)
	e.createGroup("WR two", a)
	steps := []struct {
		name, method, id string
		body             any
		roles            int
	}{
		{"PATCH", "PATCH", a, patchBody(map[string]any{"op": "replace", "path": "title", "value": "Boss"}), 1},
		{"PUT", "PUT", a, map[string]any{"schemas": []string{URNUser}, "userName": "wr-a@example.org", "displayName": "A"}, 1},
		{"PATCH deactivating", "PATCH", b, patchBody(map[string]any{"op": "replace", "value": map[string]any{"active": false}}), 0},
		{"PUT reactivating", "PUT", b, map[string]any{"schemas": []string{URNUser}, "userName": "wr-b@example.org", "active": true}, 0},
	}
	for _, st := range steps {
		w := e.must(e.do(st.method, "/Users/"+st.id, st.body), 200)
		g := e.must(e.do("GET", "/Users/"+st.id, nil), 200)
		if !bytes.Equal(w.Raw, g.Raw) {
			t.Errorf("%s answers\n %s\nGET then\n %s", st.name, w.Raw, g.Raw)
		}
		roles, _ := get(w.Body, URNDirsyncd, "roles").([]any)
		groups, _ := w.Body["groups"].([]any)
		if len(roles) != st.roles || len(groups) == 0 {
			t.Errorf("%s: %d roles and %d groups in the response, want %d and some", st.name, len(roles), len(groups), st.roles)
		}
	}
}
