package scim

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
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
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, e.createUser(fmt.Sprintf("fp%d@example.org", i), map[string]any{"displayName": fmt.Sprintf("FP %d", i)}))
	}
	grantFor(t, e.st, ids[0])
	grantFor(t, e.st, ids[2])
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
