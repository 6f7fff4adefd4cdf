package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

func TestAdminAuthentication(t *testing.T) {
	e := newAdminEnv(t, adminEnvOptions{})
	alice := e.token("alice@firm.example")
	cases := []struct {
		name, token string
		code        int
		errCode     string
	}{
		{"no token", "", 401, "unauthenticated"},
		{"unknown static token", "nope-0123456789", 401, "unauthenticated"},
		{"foreign signature", e.issuer.ForeignToken(map[string]any{"email": "alice@firm.example"}), 401, "unauthenticated"},
		{"expired", e.issuer.Token(map[string]any{"email": "alice@firm.example", "exp": time.Now().Add(-time.Minute).Unix()}), 401, "unauthenticated"},
		{"wrong audience", e.issuer.Token(map[string]any{"email": "alice@firm.example", "aud": "other"}), 401, "unauthenticated"},
		{"valid token, no such user", e.token("mallory@nowhere.example"), 403, "no_account"},
		{"valid OIDC token", alice, 200, ""},
		{"static token", tokRead, 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.call(t, "GET", "/api/v1/me", c.token, "")
			if r.code != c.code {
				t.Fatalf("status %d, want %d: %s", r.code, c.code, r.body)
			}
			if c.errCode != "" && errorCode(t, r.body) != c.errCode {
				t.Fatalf("code %q, want %q", errorCode(t, r.body), c.errCode)
			}
		})
	}
	var me Me
	r := e.call(t, "GET", "/api/v1/me", alice, "")
	if err := json.Unmarshal([]byte(r.body), &me); err != nil || me.UserID != e.alice.ID || len(me.Manages) != 1 || me.Manages[0] != "3856" || me.Support {
		t.Fatalf("me = %+v (%v)", me, err)
	}
	r = e.call(t, "GET", "/api/v1/me", e.token("ops@agency.example"), "")
	if err := json.Unmarshal([]byte(r.body), &me); err != nil || !me.Support || me.Actor != "admin:oidc:ops@agency.example" {
		t.Fatalf("support me = %+v (%v)", me, err)
	}
	// Every refusal is logged, never with the token.
	if e.logs.FilterMessage("refused").Len() < 5 {
		t.Fatalf("refusals logged: %d", e.logs.FilterMessage("refused").Len())
	}
	for _, l := range e.logs.All() {
		b, _ := json.Marshal(l.ContextMap())
		if strings.Contains(string(b), "eyJ") || strings.Contains(string(b), "nope-0123456789") {
			t.Fatalf("a token reached the log: %s %s", l.Message, b)
		}
	}
}

// Every refusal (401, 403 of a route's scope or of the permission rules)
// is logged with its status and path, never with the token.
func TestAdminRefusalsAreLogged(t *testing.T) {
	e := newAdminEnv(t, adminEnvOptions{})
	alice := e.token("alice@firm.example")
	cases := []struct {
		name, method, path, token, body string
		code                            int
	}{
		{"no token", "GET", "/api/v1/users", "", "", 401},
		{"unknown token", "GET", "/api/v1/runs", "nope-0123456789", "", 401},
		{"firm admin on the runs (scope)", "GET", "/api/v1/runs", alice, "", 403},
		{"firm admin on a held plan (scope)", "GET", "/api/v1/runs/run-held/plan", alice, "", 403},
		{"firm admin on the metrics (scope)", "GET", "/metrics", alice, "", 403},
		{"write token approving (scope)", "POST", "/api/v1/runs/run-held/approve", tokWrite, `{"planHash":"h-123"}`, 403},
		{"SCIM token triggering a run (scope)", "POST", "/api/v1/runs", tokSCIM, `{"job":"x"}`, 403},
		{"firm admin on another firm's user (rule)", "GET", "/api/v1/users/" + e.carol.ID, alice, "", 403},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			logged := func() int {
				return e.logs.FilterMessage("refused").FilterField(zap.String("path", c.path)).FilterField(zap.Int("status", c.code)).Len()
			}
			before := logged()
			if r := e.call(t, c.method, c.path, c.token, c.body); r.code != c.code {
				t.Fatalf("status %d, want %d: %s", r.code, c.code, r.body)
			}
			if n := logged() - before; n != 1 {
				t.Fatalf("refusal logged %d times, want once", n)
			}
		})
	}
	for _, l := range e.logs.All() {
		b, _ := json.Marshal(l.ContextMap())
		if strings.Contains(string(b), "eyJ") || strings.Contains(string(b), "nope-0123456789") || strings.Contains(string(b), tokWrite) {
			t.Fatalf("a token reached the log: %s %s", l.Message, b)
		}
	}
}

func TestAdminUserVisibility(t *testing.T) {
	e := newAdminEnv(t, adminEnvOptions{})
	alice, support := e.token("alice@firm.example"), e.token("ops@agency.example")
	cases := []struct {
		name, token, path string
		code              int
	}{
		{"manager reads own-firm user", alice, "/api/v1/users/" + e.bob.ID, 200},
		{"manager reads self", alice, "/api/v1/users/" + e.alice.ID, 200},
		{"manager refused other firm's user (403, not 404)", alice, "/api/v1/users/" + e.carol.ID, 403},
		{"manager refused unknown id (403: no existence leak)", alice, "/api/v1/users/00000000-0000-0000-0000-000000000000", 403},
		{"support reads any firm's user", support, "/api/v1/users/" + e.carol.ID, 200},
		{"support gets 404 for unknown id", support, "/api/v1/users/00000000-0000-0000-0000-000000000000", 404},
		{"read token reads any user", tokRead, "/api/v1/users/" + e.carol.ID, 200},
		{"staff without manager role refused", e.token("bob@firm.example"), "/api/v1/users/" + e.alice.ID, 403},
		{"manager searches own firm", alice, "/api/v1/users?firm=3856", 200},
		{"manager refused search of other firm", alice, "/api/v1/users?firm=4000", 403},
		{"manager refused firm detail of other firm", alice, "/api/v1/firms/4000", 403},
		{"manager reads own firm", alice, "/api/v1/firms/3856", 200},
		{"manager refused runs", alice, "/api/v1/runs", 403},
		{"OIDC support reads runs", support, "/api/v1/runs", 200},
		{"manager refused whole audit log", alice, "/api/v1/audit", 403},
		{"manager reads own-firm user's history", alice, "/api/v1/audit?user=" + e.bob.ID, 200},
		{"manager refused other firm user's history", alice, "/api/v1/audit?user=" + e.carol.ID, 403},
		{"support reads the audit log", support, "/api/v1/audit", 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.call(t, "GET", c.path, c.token, "")
			if r.code != c.code {
				t.Fatalf("status %d, want %d: %s", r.code, c.code, r.body)
			}
			if c.code == 403 && (strings.Contains(r.body, "carol") || strings.Contains(r.body, "jones")) {
				t.Fatalf("refusal leaks the other firm's data: %s", r.body)
			}
		})
	}
	// A default search by a manager lists only own-firm users.
	var list UserList
	r := e.call(t, "GET", "/api/v1/users", alice, "")
	if err := json.Unmarshal([]byte(r.body), &list); err != nil || len(list.Users) != 2 {
		t.Fatalf("manager search: %s", r.body)
	}
	for _, u := range list.Users {
		if u.FirmNumber != "3856" {
			t.Fatalf("manager sees %+v", u)
		}
	}
	// Support searches everyone; text and status filters apply.
	r = e.call(t, "GET", "/api/v1/users?q=CAR", support, "")
	if err := json.Unmarshal([]byte(r.body), &list); err != nil || len(list.Users) != 1 || list.Users[0].UserName != "carol" {
		t.Fatalf("support search q=CAR: %s", r.body)
	}
	r = e.call(t, "GET", "/api/v1/users?status=Complete", support, "")
	if err := json.Unmarshal([]byte(r.body), &list); err != nil || len(list.Users) != 1 || list.Users[0].UserName != "carol" {
		t.Fatalf("status=Complete: %s", r.body)
	}
	r = e.call(t, "GET", "/api/v1/users?status=Incomplete", support, "")
	if err := json.Unmarshal([]byte(r.body), &list); err != nil || len(list.Users) != 2 {
		t.Fatalf("status=Incomplete: %s", r.body)
	}
	// Detail: grants with provenance, status, links and explain; no-store.
	r = e.call(t, "GET", "/api/v1/users/"+e.carol.ID, support, "")
	var d UserDetail
	if err := json.Unmarshal([]byte(r.body), &d); err != nil || d.Status != "Complete" || len(d.Grants) != 1 ||
		d.Grants[0].Provenance[0].Ref != "ccms-staff" || len(d.Links) != 1 || d.Explain == nil || len(d.Explain.Firms) == 0 {
		t.Fatalf("detail: %s", r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("personal data without no-store: %v", r.header)
	}
	// Managers see firms of their own only.
	r = e.call(t, "GET", "/api/v1/firms", alice, "")
	if !strings.Contains(r.body, `"3856"`) || strings.Contains(r.body, `"4000"`) {
		t.Fatalf("manager firms: %s", r.body)
	}
}

func grantBody(firm, service, role string, offices ...string) string {
	b, _ := json.Marshal(GrantRequest{FirmNumber: firm, Service: service, Role: role, Offices: offices})
	return string(b)
}

func TestAdminGrantRules(t *testing.T) {
	e := newAdminEnv(t, adminEnvOptions{})
	alice, support := e.token("alice@firm.example"), e.token("ops@agency.example")
	bob, carol, self := "/api/v1/users/"+e.bob.ID+"/grants", "/api/v1/users/"+e.carol.ID+"/grants", "/api/v1/users/"+e.alice.ID+"/grants"
	cases := []struct {
		name, token, method, path, body string
		code                            int
		field                           string // named in a 400 message
	}{
		// Firm User Manager: service roles and offices of own firm, self included.
		{"manager gives service role with own office", alice, "POST", bob, grantBody("3856", "ccms", "case-management", "0Q731M"), 201, ""},
		{"manager changes its offices", alice, "POST", bob, grantBody("3856", "ccms", "case-management", "0Q731M", "1A001L"), 200, ""},
		{"manager gives service role to self", alice, "POST", self, grantBody("3856", "crime-apply", "access"), 201, ""},
		{"manager gives auto-grant service without role", alice, "POST", bob, grantBody("3856", "civil-apply", ""), 201, ""},
		{"manager refused admin role to staff", alice, "POST", bob, grantBody("3856", "ccms", "firm-administrator"), 403, ""},
		{"manager refused admin role to self", alice, "POST", self, grantBody("3856", "ccms", "firm-administrator"), 403, ""},
		{"manager refused Firm User Manager to staff", alice, "POST", bob, grantBody("3856", "manage-users", "firm-user-manager"), 403, ""},
		{"manager refused other firm's user", alice, "POST", carol, grantBody("4000", "ccms", "case-management", "2B002X"), 403, ""},
		{"manager refused granting in other firm", alice, "POST", bob, grantBody("4000", "ccms", "case-management"), 403, ""},
		{"manager refused office of another firm", alice, "POST", bob, grantBody("3856", "ccms", "bill-preparation", "2B002X"), 400, "offices"},
		{"manager refused unknown office", alice, "POST", bob, grantBody("3856", "ccms", "bill-preparation", "ZZZZZZ"), 400, "offices"},
		{"role not offered to the firm type", support, "POST", bob, grantBody("3856", "ccms", "chambers-administrator"), 400, "role"},
		{"unknown role", alice, "POST", bob, grantBody("3856", "ccms", "nope"), 400, "role"},
		{"unknown service", alice, "POST", bob, grantBody("3856", "nope", "x"), 400, "service"},
		{"missing firm", alice, "POST", bob, grantBody("", "ccms", "case-management"), 400, "firmNumber"},
		{"support gives admin role", support, "POST", bob, grantBody("3856", "ccms", "firm-administrator"), 201, ""},
		{"support gives role in any firm", support, "POST", carol, grantBody("4000", "ccms", "bill-preparation", "2B002X"), 201, ""},
		{"support refused office of another firm", support, "POST", carol, grantBody("4000", "ccms", "bill-supervisor", "0Q731M"), 400, "offices"},
		{"support refused firm the user is not in", support, "POST", carol, grantBody("3856", "ccms", "bill-supervisor"), 400, "firmNumber"},
		{"read token refused grants", tokRead, "POST", bob, grantBody("3856", "ccms", "bill-supervisor"), 403, ""},
		{"write token gives service role", tokWrite, "POST", bob, grantBody("3856", "ccms", "bill-supervisor"), 201, ""},
		{"write token gives another service role", tokWrite, "POST", bob, grantBody("3856", "ccms", "office-manager"), 201, ""},
		{"write token refused admin role", tokWrite, "POST", carol, grantBody("4000", "ccms", "firm-administrator"), 403, ""},
		// Removals follow the same rules.
		{"manager removes service role", alice, "DELETE", bob + "/3856/ccms/bill-supervisor", "", 204, ""},
		{"manager refused removing admin role", alice, "DELETE", bob + "/3856/ccms/firm-administrator", "", 403, ""},
		{"manager refused removing other firm's grant", alice, "DELETE", carol + "/4000/ccms/case-management", "", 403, ""},
		{"support removes admin role", support, "DELETE", bob + "/3856/ccms/firm-administrator", "", 204, ""},
		{"removing a role not held is 404", support, "DELETE", bob + "/3856/ccms/firm-administrator", "", 404, ""},
		// Bad input.
		{"malformed JSON", alice, "POST", bob, `{"firmNumber":`, 400, ""},
		{"unknown JSON field", alice, "POST", bob, `{"firmNumber":"3856","bogus":1}`, 400, ""},
		{"oversized body", alice, "POST", bob, `{"firmNumber":"` + strings.Repeat("x", 5000) + `"}`, 413, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.call(t, c.method, c.path, c.token, c.body)
			if r.code != c.code {
				t.Fatalf("status %d, want %d: %s", r.code, c.code, r.body)
			}
			if c.field != "" && !strings.Contains(r.body, `\"`+c.field+`\"`) {
				t.Fatalf("400 does not name %q: %s", c.field, r.body)
			}
			if c.code == 403 && strings.Contains(r.body, "carol") {
				t.Fatalf("leak: %s", r.body)
			}
		})
	}
	ctx := context.Background()
	// The manager's grant is manual, with alice as the actor, audited with her.
	g, err := e.st.GetGrant(ctx, directory.GrantKey{UserID: e.bob.ID, FirmNumber: "3856", Service: "ccms", Role: "case-management"})
	if err != nil {
		t.Fatal(err)
	}
	want := "admin:" + e.alice.ID
	if len(g.Provenance) != 1 || g.Provenance[0].Kind != directory.ProvManual || g.Provenance[0].Ref != want ||
		strings.Join(g.Offices, ",") != "0Q731M,1A001L" {
		t.Fatalf("grant = %+v", g)
	}
	var byAlice, bySupport []audit.Event
	err = e.st.Audit(ctx, store.AuditFilter{ObjectID: e.bob.ID}, func(ev audit.Event) error {
		switch ev.Actor {
		case want:
			byAlice = append(byAlice, ev)
		case "admin:oidc:ops@agency.example":
			bySupport = append(bySupport, ev)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// alice: put, update, civil-apply, delete bill-supervisor; support: put and delete firm-administrator.
	if len(byAlice) != 4 || len(bySupport) != 2 {
		t.Fatalf("audit by alice %d, by support %d", len(byAlice), len(bySupport))
	}
	for _, ev := range byAlice {
		if ev.RequestID == "" || (ev.Action != "grant.put" && ev.Action != "grant.delete") {
			t.Fatalf("event %+v", ev)
		}
	}
	// Nothing was written by a refused request: bob holds no admin role.
	if _, err := e.st.GetGrant(ctx, directory.GrantKey{UserID: e.bob.ID, FirmNumber: "3856", Service: "ccms", Role: "firm-administrator"}); !isNotFound(err) {
		t.Fatalf("admin role present after removal: %v", err)
	}
	if _, err := e.st.GetGrant(ctx, directory.GrantKey{UserID: e.alice.ID, FirmNumber: "3856", Service: "ccms", Role: "firm-administrator"}); !isNotFound(err) {
		t.Fatalf("refused self-grant of an admin role was written: %v", err)
	}
}

func TestAdminAuditCatalogueRuns(t *testing.T) {
	e := newAdminEnv(t, adminEnvOptions{})
	alice, support := e.token("alice@firm.example"), e.token("ops@agency.example")
	if r := e.call(t, "POST", "/api/v1/users/"+e.bob.ID+"/grants", alice, grantBody("3856", "ccms", "case-management", "0Q731M")); r.code != 201 {
		t.Fatalf("grant: %d %s", r.code, r.body)
	}
	// Audit filter and CSV export.
	r := e.call(t, "GET", "/api/v1/audit?actor=admin:"+e.alice.ID+"&action=grant.put", support, "")
	var al AuditList
	if err := json.Unmarshal([]byte(r.body), &al); err != nil || len(al.Events) != 1 || al.Events[0].ObjectID != e.bob.ID {
		t.Fatalf("audit filter: %s", r.body)
	}
	r = e.call(t, "GET", "/api/v1/audit?format=csv&user="+e.bob.ID, support, "")
	lines := strings.Split(strings.TrimSpace(r.body), "\n")
	if r.code != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/csv") || !strings.HasPrefix(lines[0], "seq,time,actor,action") ||
		!strings.Contains(r.body, "grant.put") || len(lines) < 2 {
		t.Fatalf("csv: %d %v %s", r.code, r.header, r.body)
	}
	if r := e.call(t, "GET", "/api/v1/audit?since=yesterday", support, ""); r.code != 400 || !strings.Contains(r.body, `\"since\"`) {
		t.Fatalf("bad since: %d %s", r.code, r.body)
	}
	// Catalogue: admin roles are not grantable by a firm admin.
	r = e.call(t, "GET", "/api/v1/catalogue", alice, "")
	var cat struct{ Services []CatalogueService }
	if err := json.Unmarshal([]byte(r.body), &cat); err != nil || len(cat.Services) == 0 {
		t.Fatalf("catalogue: %s", r.body)
	}
	for _, s := range cat.Services {
		for _, role := range s.Roles {
			if role.Admin == role.Grantable {
				t.Fatalf("role %s admin=%v grantable=%v for a firm admin", role.ID, role.Admin, role.Grantable)
			}
		}
	}
	// Held plan and approve by hash: support only, exact hash.
	if r := e.call(t, "GET", "/api/v1/runs/run-held/plan", alice, ""); r.code != 403 {
		t.Fatalf("manager plan: %d", r.code)
	}
	r = e.call(t, "GET", "/api/v1/runs/run-held/plan", support, "")
	var hp HeldPlan
	if err := json.Unmarshal([]byte(r.body), &hp); err != nil || hp.PlanHash != "h-123" || !strings.Contains(string(hp.Plan), "case-management") {
		t.Fatalf("plan: %s", r.body)
	}
	if r := e.call(t, "POST", "/api/v1/runs/run-held/approve", tokWrite, `{"planHash":"h-123"}`); r.code != 403 {
		t.Fatalf("write token approve: %d %s", r.code, r.body)
	}
	if r := e.call(t, "POST", "/api/v1/runs/run-held/approve", support, `{"planHash":"wrong"}`); r.code != 409 || errorCode(t, r.body) != "plan_mismatch" {
		t.Fatalf("wrong hash: %d %s", r.code, r.body)
	}
	if r := e.call(t, "POST", "/api/v1/runs/run-held/approve", support, `{}`); r.code != 400 || !strings.Contains(r.body, "planHash") {
		t.Fatalf("no hash: %d %s", r.code, r.body)
	}
	if r := e.call(t, "POST", "/api/v1/runs/nope/approve", support, `{"planHash":"h"}`); r.code != 404 {
		t.Fatalf("unknown run: %d %s", r.code, r.body)
	}
	if r := e.call(t, "POST", "/api/v1/runs/run-held/approve", support, `{"planHash":"h-123"}`); r.code != 200 {
		t.Fatalf("approve: %d %s", r.code, r.body)
	}
	if got := e.approver.calls[len(e.approver.calls)-1]; got != "run-held h-123 admin:oidc:ops@agency.example" {
		t.Fatalf("approver call %q", got)
	}
	if r := e.call(t, "POST", "/api/v1/runs/run-held/approve", support, `{"planHash":"h-123"}`); r.code != 409 || errorCode(t, r.body) != "not_held" {
		t.Fatalf("second approve: %d %s", r.code, r.body)
	}
	// Run detail pages items; filter by action.
	r = e.call(t, "GET", "/api/v1/runs/run-ldap?action=failed", support, "")
	var rd RunDetail
	if err := json.Unmarshal([]byte(r.body), &rd); err != nil || len(rd.Items) != 1 || rd.Items[0].Action != "failed" {
		t.Fatalf("run detail: %s", r.body)
	}
	_ = http.StatusOK
}

func TestAdminUserNameClaim(t *testing.T) {
	e := newAdminEnv(t, adminEnvOptions{userClaim: "preferred_username"})
	var me Me
	r := e.call(t, "GET", "/api/v1/me", e.issuer.Token(map[string]any{"preferred_username": "ALICE", "email": "someone@else.example"}), "")
	if err := json.Unmarshal([]byte(r.body), &me); err != nil || me.UserID != e.alice.ID {
		t.Fatalf("userName claim: %d %s", r.code, r.body)
	}
	// The e-mail claim is not used to match when the user claim is another.
	r = e.call(t, "GET", "/api/v1/me", e.issuer.Token(map[string]any{"preferred_username": "nobody", "email": "alice@firm.example"}), "")
	if r.code != 403 || errorCode(t, r.body) != "no_account" {
		t.Fatalf("unknown userName: %d %s", r.code, r.body)
	}
}

// A user of another firm with a firm profile in the manager's firm is one
// of the manager's users: found by search, visible, grantable there only.
func TestAdminMultiFirmUser(t *testing.T) {
	e := newAdminEnv(t, adminEnvOptions{insecureCookies: true})
	err := e.st.Update(context.Background(), audit.Meta{Actor: "test"}, func(ctx context.Context, tx store.Tx) error {
		return tx.PutFirmMembership(ctx, directory.FirmMembership{UserID: e.carol.ID, FirmNumber: "3856", Source: "cwa"})
	})
	if err != nil {
		t.Fatal(err)
	}
	alice := e.token("alice@firm.example")
	var list UserList
	r := e.call(t, "GET", "/api/v1/users?q=carol", alice, "")
	if err := json.Unmarshal([]byte(r.body), &list); err != nil || len(list.Users) != 1 || list.Users[0].ID != e.carol.ID {
		t.Fatalf("search: %s", r.body)
	}
	r = e.call(t, "GET", "/api/v1/users/"+e.carol.ID, alice, "")
	var d UserDetail
	if err := json.Unmarshal([]byte(r.body), &d); err != nil || r.code != 200 {
		t.Fatalf("detail: %d %s", r.code, r.body)
	}
	// carol's 4000 grant and profile are not the 3856 manager's business.
	if len(d.Grants) != 0 || len(d.Memberships) != 1 || d.Memberships[0].FirmNumber != "3856" {
		t.Fatalf("detail leaks firm 4000: %+v %+v", d.Grants, d.Memberships)
	}
	for _, f := range d.Explain.Firms {
		if f.Number != "3856" {
			t.Fatalf("explain leaks firm %s", f.Number)
		}
	}
	if r := e.call(t, "POST", "/api/v1/users/"+e.carol.ID+"/grants", alice, grantBody("3856", "ccms", "bill-preparation", "1A001L")); r.code != 201 {
		t.Fatalf("grant in own firm: %d %s", r.code, r.body)
	}
	if r := e.call(t, "POST", "/api/v1/users/"+e.carol.ID+"/grants", alice, grantBody("4000", "ccms", "bill-preparation", "2B002X")); r.code != 403 {
		t.Fatalf("grant in the other firm: %d %s", r.code, r.body)
	}
	// Her history: support reads the 4000 grant and profile events; the
	// 3856 manager reads only those of 3856 (API, CSV export, pages).
	r = e.call(t, "GET", "/api/v1/audit?user="+e.carol.ID, e.token("ops@agency.example"), "")
	if !strings.Contains(r.body, "2B002X") {
		t.Fatalf("support history lacks firm 4000: %s", r.body)
	}
	var al AuditList
	r = e.call(t, "GET", "/api/v1/audit?user="+e.carol.ID, alice, "")
	if err := json.Unmarshal([]byte(r.body), &al); err != nil || r.code != 200 {
		t.Fatalf("manager history: %d %s", r.code, r.body)
	}
	var grants3856 int
	for _, ev := range al.Events {
		ba := string(ev.Before) + string(ev.After)
		if strings.Contains(ba, "2B002X") || (ev.ObjectType == "grant" || strings.HasPrefix(ev.Action, "firm_membership.")) && strings.Contains(ba, "4000") {
			t.Fatalf("manager history leaks firm 4000: %s %s → %s", ev.Action, ev.Before, ev.After)
		}
		if ev.Action == "grant.put" {
			grants3856++
		}
	}
	if grants3856 != 1 {
		t.Fatalf("manager history: %d grant events of 3856, want 1: %s", grants3856, r.body)
	}
	// Paging one event at a time walks past the events left out.
	all, walked := len(al.Events), 0
	for after := int64(0); ; {
		var page AuditList
		r = e.call(t, "GET", "/api/v1/audit?limit=1&user="+e.carol.ID+"&after="+strconv.FormatInt(after, 10), alice, "")
		if err := json.Unmarshal([]byte(r.body), &page); err != nil {
			t.Fatalf("manager history page: %s", r.body)
		}
		walked += len(page.Events)
		if page.NextAfter == 0 {
			break
		}
		after = page.NextAfter
	}
	if walked != all {
		t.Fatalf("paging one by one read %d events, one read %d", walked, all)
	}
	if r := e.call(t, "GET", "/api/v1/audit?format=csv&user="+e.carol.ID, alice, ""); r.code != 200 || strings.Contains(r.body, "2B002X") ||
		!strings.Contains(r.body, "1A001L") {
		t.Fatalf("manager CSV history: %d %s", r.code, r.body)
	}
	b := e.browser(t)
	if resp, _ := b.signIn("/ui/users/"+e.carol.ID, "alice@firm.example"); resp.StatusCode != 200 {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	for _, path := range []string{"/ui/users/" + e.carol.ID, "/ui/audit?user=" + e.carol.ID} {
		resp, body := b.get(path)
		if resp.StatusCode != 200 || strings.Contains(body, "2B002X") || !strings.Contains(body, "1A001L") {
			t.Fatalf("%s: %d, leaks firm 4000's grant or lacks 3856's", path, resp.StatusCode)
		}
	}
}

// The audit time filter, the e-mail search and a firm's offices.
func TestAdminAuditTimeSearchOffices(t *testing.T) {
	e := newAdminEnv(t, adminEnvOptions{})
	support := e.token("ops@agency.example")
	count := func(q string) int {
		t.Helper()
		var al AuditList
		r := e.call(t, "GET", "/api/v1/audit?user="+e.bob.ID+q, support, "")
		if err := json.Unmarshal([]byte(r.body), &al); err != nil || r.code != 200 {
			t.Fatalf("audit %s: %d %s", q, r.code, r.body)
		}
		return len(al.Events)
	}
	past, future := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if n := count("&since=" + past + "&until=" + future); n == 0 {
		t.Fatal("no events in the last hour")
	}
	if n := count("&since=" + future); n != 0 {
		t.Fatalf("since the future: %d events", n)
	}
	if n := count("&until=" + past); n != 0 {
		t.Fatalf("until an hour ago: %d events", n)
	}
	var list UserList
	r := e.call(t, "GET", "/api/v1/users?q=JONES.example", support, "")
	if err := json.Unmarshal([]byte(r.body), &list); err != nil || len(list.Users) != 1 || list.Users[0].ID != e.carol.ID {
		t.Fatalf("search by e-mail: %s", r.body)
	}
	var fd FirmDetail
	r = e.call(t, "GET", "/api/v1/firms/3856", e.token("alice@firm.example"), "")
	if err := json.Unmarshal([]byte(r.body), &fd); err != nil || fd.Firm.Number != "3856" || len(fd.Offices) != 2 {
		t.Fatalf("firm detail: %s", r.body)
	}
	for _, o := range fd.Offices {
		if o.FirmNumber != "3856" {
			t.Fatalf("firm 3856 lists office %+v", o)
		}
	}
	if r := e.call(t, "GET", "/api/v1/firms/9999", support, ""); r.code != 404 || errorCode(t, r.body) != "not_found" {
		t.Fatalf("unknown firm for support: %d %s", r.code, r.body)
	}
	if r := e.call(t, "GET", "/api/v1/firms/9999", e.token("alice@firm.example"), ""); r.code != 403 {
		t.Fatalf("unknown firm for a firm admin: %d (403: no existence leak)", r.code)
	}
}
