package server

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/store"
)

// The Firm User Manager role manages the users of one's own firm: a
// manager who has left the firm (no profile there, another primary firm)
// but still holds the role there (a manual grant, which reconcile never
// removes from an active user) manages nobody there any more, in the API
// and the pages.
func TestFormerMemberManagesNoOne(t *testing.T) {
	e := newAdminEnv(t, adminEnvOptions{insecureCookies: true})
	ctx := context.Background()
	b := e.browser(t)
	_, body := b.signIn("/ui/users/"+e.bob.ID, "alice@firm.example")
	tok := csrfOf(t, body)
	err := e.st.Update(ctx, audit.Meta{Actor: "test"}, func(ctx context.Context, tx store.Tx) error {
		if err := tx.RemoveFirmMembership(ctx, e.alice.ID, "3856"); err != nil {
			return err
		}
		u, err := tx.GetUser(ctx, e.alice.ID)
		if err != nil {
			return err
		}
		u.FirmNumber = "5000" // moved to chambers
		return tx.UpdateUser(ctx, &u, 0)
	})
	if err != nil {
		t.Fatal(err)
	}
	if gs, err := e.st.ListGrants(ctx, store.GrantQuery{UserID: e.alice.ID, Service: ManagerService}); err != nil || len(gs) != 1 {
		t.Fatalf("the manager grant is gone: %v %v", gs, err)
	}
	alice := e.token("alice@firm.example")
	for _, path := range []string{"/api/v1/users/" + e.bob.ID, "/api/v1/users?firm=3856", "/api/v1/audit?user=" + e.bob.ID, "/api/v1/firms/3856"} {
		if r := e.call(t, "GET", path, alice, ""); r.code != 403 || strings.Contains(r.body, "bob") {
			t.Errorf("GET %s by a former member: %d %s", path, r.code, r.body)
		}
	}
	if r := e.call(t, "POST", "/api/v1/users/"+e.bob.ID+"/grants", alice, grantBody("3856", "ccms", "case-management")); r.code != 403 {
		t.Errorf("grant by a former member: %d %s", r.code, r.body)
	}
	if r := e.call(t, "GET", "/api/v1/me", alice, ""); r.code != 200 || strings.Contains(r.body, "3856") {
		t.Errorf("me of a former member: %d %s", r.code, r.body)
	}
	if resp, body := b.get("/ui/users/" + e.bob.ID); resp.StatusCode != 403 || strings.Contains(body, "bob@firm.example") {
		t.Errorf("user page for a former member: %d", resp.StatusCode)
	}
	if resp, _ := b.post("/ui/users/"+e.bob.ID+"/grants", url.Values{"csrf": {tok}, "firmNumber": {"3856"}, "role": {"ccms/case-management"}}); resp.StatusCode != 403 {
		t.Errorf("grant form by a former member: %d", resp.StatusCode)
	}
	if gs, err := e.st.ListGrants(ctx, store.GrantQuery{UserID: e.bob.ID}); err != nil || len(gs) != 0 {
		t.Fatalf("a former member changed grants: %v %v", gs, err)
	}
}
