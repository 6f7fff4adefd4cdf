package ldapsync

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/dirsyncd/dirsyncd/store"
)

func TestDeletedObjectsDN(t *testing.T) {
	for in, want := range map[string]string{
		"OU=Staff,DC=corp,DC=example": "CN=Deleted Objects,DC=corp,DC=example",
		"dc=example,dc=org":           "CN=Deleted Objects,DC=example,DC=org",
		"ou=people,o=firm":            "",
		"not a dn":                    "",
	} {
		if got := deletedObjectsDN([]string{in}); got != want {
			t.Errorf("deletedObjectsDN(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestADTombstones: an incremental AD run reads the objects deleted since
// its cursor with the Show Deleted control, marks a deleted user's link
// gone (the user stays), removes a deleted group, ignores what is not
// ours; unreadable deleted objects only wait for the next full sync, a
// network failure fails the run and keeps the cursor.
func TestADTombstones(t *testing.T) {
	st := openSQLite(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 23, 1, 0, 0, 0, time.UTC)
	run := func(phase string, prep func(*replayConn)) (*Result, *replayConn, error) {
		t.Helper()
		c := loadRecorded(t, phase)
		if prep != nil {
			prep(c)
		}
		s := New(adSource(), st, Options{Now: func() time.Time { return now }, Dial: dialReplay(c)})
		res, err := s.Run(ctx, RunOptions{})
		return res, c, err
	}
	if _, _, err := run("full", nil); err != nil {
		t.Fatal(err)
	}
	// The recorded incremental phase has no deleted-objects response: the
	// replay answers noSuchObject, as a DC without access would.
	res, c, err := run("incremental", nil)
	if err != nil || res.Counts["tombstones_unreadable"] != 1 || res.Counts["gone"] != 0 {
		t.Fatalf("unreadable deleted objects: %v %v\n%s", err, res.Counts, strings.Join(c.log, "\n"))
	}
	js, _ := st.GetUserByUserName(ctx, "jsmith")

	// A network failure on the deleted-objects read fails the run.
	res, _, err = run("tombstones", func(c *replayConn) { c.failFilter = "(&(isDeleted=TRUE)(uSNChanged>=5101))" })
	if err == nil || res.Status == "ok" {
		t.Fatalf("network failure: %v, status %s", err, res.Status)
	}
	if raw, _ := st.GetCursor(ctx, "ldap:corp"); !strings.Contains(raw, `"usn":5100`) {
		t.Fatalf("cursor moved after a failed run: %s", raw)
	}

	res, c, err = run("tombstones", nil)
	if err != nil {
		t.Fatalf("tombstones: %v\n%s", err, strings.Join(c.log, "\n"))
	}
	if !slices.Contains(c.controls, "(&(isDeleted=TRUE)(uSNChanged>=5101)) "+ldap.ControlTypePaging+" "+ldap.ControlTypeMicrosoftShowDeleted) {
		t.Fatalf("deleted objects not read with the Show Deleted control: %v", c.controls)
	}
	if res.Counts["gone"] != 1 || res.Counts["groups_gone"] != 1 || res.Counts["tombstones_unreadable"] != 0 {
		t.Fatalf("tombstones: counts %v", res.Counts)
	}
	ls, _ := st.ListUserLinks(ctx, js.ID)
	if len(ls) != 1 || ls[0].GoneAt == nil {
		t.Fatalf("jsmith's link after its tombstone: %+v", ls)
	}
	if u, err := st.GetUser(ctx, js.ID); err != nil || u.DeletedAt != nil {
		t.Fatalf("jsmith's record must stay: %+v, %v", u, err)
	}
	if p, _ := st.ListGroups(ctx, storeGroupByName("Supervisors")); len(p.Items) != 0 {
		t.Fatalf("Supervisors still listed: %+v", p.Items)
	}
	its, _ := st.ListRunItems(ctx, store.RunItemQuery{RunID: res.RunID, Action: "gone", Limit: 100})
	if len(its) != 2 || !strings.Contains(its[0].Reason+its[1].Reason, "tombstone, last in OU=Staff,DC=corp,DC=example") {
		t.Fatalf("gone items %+v", its)
	}
	if raw, _ := st.GetCursor(ctx, "ldap:corp"); !strings.Contains(raw, `"usn":5300`) {
		t.Fatalf("cursor after tombstones: %s", raw)
	}
}
