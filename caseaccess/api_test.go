package caseaccess_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/auth"
	"github.com/dirsyncd/dirsyncd/caseaccess"
	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/server"
)

// apiServer mounts the case routes on the real server with two tokens.
func apiServer(t testing.TB, e *env) http.Handler {
	t.Helper()
	v, err := auth.NewVerifier([]config.TokenConfig{
		{Name: "writer", Token: config.NewSecret("write-token"), Scopes: []string{auth.ScopeAdminWrite}},
		{Name: "reader", Token: config.NewSecret("read-token"), Scopes: []string{auth.ScopeAdminRead}},
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(server.Options{Store: e.st, Verifier: v, Now: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	api := caseaccess.NewAPI(e.svc, func(r *http.Request) audit.Meta {
		p, _ := auth.PrincipalFrom(r.Context())
		return audit.Meta{Actor: p.Actor(), RequestID: server.RequestID(r.Context())}
	}, nil)
	for _, rt := range api.Routes() {
		s.Handle(rt.Pattern, rt.Scope, rt.Handler)
	}
	return s.Handler()
}

type apiResp struct {
	Status int
	Body   map[string]any
}

func call(t testing.TB, h http.Handler, method, path, token, body string) apiResp {
	t.Helper()
	var r *http.Request
	if body == "" {
		r = httptest.NewRequest(method, path, nil)
	} else {
		r = httptest.NewRequest(method, path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
	}
	r.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	out := apiResp{Status: w.Code}
	if err := json.Unmarshal(w.Body.Bytes(), &out.Body); err != nil {
		t.Fatalf("%s %s: body %q: %v", method, path, w.Body.String(), err)
	}
	return out
}

func errField(r apiResp) string {
	e, _ := r.Body["error"].(map[string]any)
	s, _ := e["field"].(string)
	return s
}

func TestAPI(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		h := apiServer(t, e)
		exp := t0.Add(24 * time.Hour).Format(time.RFC3339)
		before := e.auditCount("")
		for _, tc := range []struct {
			name, method, path, token, body string
			status                          int
			field                           string
		}{
			{"read token cannot invite", "POST", "/api/v1/cases/T20260001/invites", "read-token",
				`{"user":"nick","inviter":"pat","role":"fee-paid-judge"}`, 403, ""},
			{"unknown case", "POST", "/api/v1/cases/NOPE/invites", "write-token",
				`{"user":"nick","inviter":"pat","role":"fee-paid-judge"}`, 404, "ref"},
			{"unknown user", "POST", "/api/v1/cases/T20260001/invites", "write-token",
				`{"user":"ghost","inviter":"pat","role":"fee-paid-judge"}`, 404, "user"},
			{"past expiry", "POST", "/api/v1/cases/T20260001/invites", "write-token",
				`{"user":"nick","inviter":"pat","role":"fee-paid-judge","expiresAt":"2020-01-01T00:00:00Z"}`, 400, "expiresAt"},
			{"malformed expiry", "POST", "/api/v1/cases/T20260001/invites", "write-token",
				`{"user":"nick","inviter":"pat","role":"fee-paid-judge","expiresAt":"tomorrow"}`, 400, "expiresAt"},
			{"missing defendants", "POST", "/api/v1/cases/T20260001/invites", "write-token",
				`{"user":"dan","inviter":"pat","role":"defence-advocate"}`, 400, "defendants"},
			{"unknown field", "POST", "/api/v1/cases/T20260001/invites", "write-token",
				`{"user":"dan","inviter":"pat","role":"defence-advocate","defendant":"Smith"}`, 400, "defendant"},
			{"chambers domain", "POST", "/api/v1/cases/T20260001/domains", "write-token",
				`{"domain":"chambers.co.uk.cjsm.net","defendants":["Smith"]}`, 400, "domain"},
			{"unknown user decision", "GET", "/api/v1/cases/T20260001/access/ghost", "read-token", "", 404, "user"},
			{"unknown case decision", "GET", "/api/v1/cases/NOPE/access/nick", "read-token", "", 404, "ref"},
			{"group without usual role", "POST", "/api/v1/cases/T20260001/groups", "write-token", `{"location":"Leeds"}`, 400, "usualRole"},
			{"group on unknown case", "POST", "/api/v1/cases/NOPE/groups", "write-token", `{"usualRole":"NOMS"}`, 404, "ref"},
			{"malformed domain", "POST", "/api/v1/cases/T20260001/domains", "write-token", `{"domain":"not a domain","defendants":["Smith"]}`, 400, "domain"},
			{"domain without defendants", "POST", "/api/v1/cases/T20260001/domains", "write-token", `{"domain":"johnson.co.uk.cjsm.net"}`, 400, "defendants"},
			{"case with unknown owner", "POST", "/api/v1/cases", "write-token", `{"ref":"T20269999","owners":["pat","ghost"]}`, 404, "owners"},
			{"revoke unknown invite", "DELETE", "/api/v1/cases/T20260001/invites/nope", "write-token", "", 404, "invite"},
			{"expiry of unknown invite", "PATCH", "/api/v1/cases/T20260001/invites/nope", "write-token", `{"expiresAt":null}`, 404, "invite"},
			{"expiry missing", "PATCH", "/api/v1/cases/T20260001/invites/nope", "write-token", `{}`, 400, "expiresAt"},
			{"remove unknown group grant", "DELETE", "/api/v1/cases/T20260001/groups/nope", "write-token", "", 404, "grant"},
			{"body too large", "POST", "/api/v1/cases/T20260001/invites", "write-token",
				`{"user":"nick","inviter":"pat","role":"fee-paid-judge","message":"` + strings.Repeat("x", 70<<10) + `"}`, 413, ""},
			{"no token", "GET", "/api/v1/cases/T20260001/access/nick", "", "", 401, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := call(t, h, tc.method, tc.path, tc.token, tc.body)
				if r.Status != tc.status || errField(r) != tc.field {
					t.Fatalf("status %d field %q, want %d %q: %v", r.Status, errField(r), tc.status, tc.field, r.Body)
				}
			})
		}
		if got := e.auditCount(""); got != before {
			t.Fatalf("refused requests wrote %d audit events", got-before)
		}
		if _, err := e.cs.GetCase(e.ctx, "T20269999"); err == nil {
			t.Fatal("a case refused for an unknown owner was created")
		}

		r := call(t, h, "POST", "/api/v1/cases/T20260001/invites", "write-token",
			`{"user":"dan","inviter":"pat","role":"defence-advocate","defendants":["Smith"],"expiresAt":"`+exp+`","message":"hi"}`)
		if r.Status != 201 {
			t.Fatalf("invite: %d %v", r.Status, r.Body)
		}
		id, _ := r.Body["id"].(string)
		if r := call(t, h, "POST", "/api/v1/cases/T20260001/invites", "write-token",
			`{"user":"dan","inviter":"pat","role":"defence-advocate","defendants":["Smith"]}`); r.Status != 409 || errField(r) != "user" {
			t.Fatalf("duplicate invite: %d %v", r.Status, r.Body)
		}
		n := 0
		_ = e.st.Audit(e.ctx, storeFilter("case.invite.create"), func(ev auditEvent) error {
			if ev.Actor == "admin:writer" {
				n++
			}
			return nil
		})
		if n != 1 {
			t.Errorf("invite audit events by admin:writer = %d", n)
		}
		r = call(t, h, "GET", "/api/v1/cases/T20260001/access/dan", "read-token", "")
		if r.Status != 200 || r.Body["allowed"] != true || r.Body["firstAccess"] != true {
			t.Fatalf("decision: %d %v", r.Status, r.Body)
		}
		if via, _ := r.Body["via"].(map[string]any); via["kind"] != "invite" || via["id"] != id {
			t.Errorf("via = %v", r.Body["via"])
		}
		r = call(t, h, "GET", "/api/v1/cases/T20260001/access/nick", "read-token", "")
		if r.Status != 200 || r.Body["allowed"] != false {
			t.Fatalf("denied decision: %d %v", r.Status, r.Body)
		}
		if gs, _ := r.Body["grantors"].([]any); len(gs) != 1 || gs[0].(map[string]any)["userName"] != "pat" {
			t.Errorf("grantors = %v", r.Body["grantors"])
		}
		// change expiry, list, revoke
		if r := call(t, h, "PATCH", "/api/v1/cases/T20260001/invites/"+id, "write-token", `{"expiresAt":null}`); r.Status != 200 || r.Body["expiresAt"] != nil {
			t.Fatalf("clear expiry: %d %v", r.Status, r.Body)
		}
		if r := call(t, h, "PATCH", "/api/v1/cases/T20260001/invites/"+id, "write-token", `{"expiresAt":"2020-01-01T00:00:00Z"}`); r.Status != 400 || errField(r) != "expiresAt" {
			t.Fatalf("past expiry: %d %v", r.Status, r.Body)
		}
		if r := call(t, h, "GET", "/api/v1/cases/T20260001/invites", "read-token", ""); r.Status != 200 || len(r.Body["invites"].([]any)) != 2 {
			t.Fatalf("list: %d %v", r.Status, r.Body)
		}
		if r := call(t, h, "DELETE", "/api/v1/cases/T20260001/invites/"+id, "write-token", ""); r.Status != 200 || r.Body["revokeReason"] != "revoked" {
			t.Fatalf("revoke: %d %v", r.Status, r.Body)
		}
		// group grant add/remove
		r = call(t, h, "POST", "/api/v1/cases/T20260001/groups", "write-token", `{"usualRole":"NOMS","location":"Leeds"}`)
		if r.Status != 201 {
			t.Fatalf("add group: %d %v", r.Status, r.Body)
		}
		gid, _ := r.Body["id"].(string)
		if r := call(t, h, "GET", "/api/v1/cases/T20260001/access/nick", "read-token", ""); r.Body["allowed"] != true {
			t.Fatalf("nick via group: %v", r.Body)
		}
		if r := call(t, h, "DELETE", "/api/v1/cases/T20260001/groups/"+gid, "write-token", ""); r.Status != 200 || r.Body["retainedUsers"] != float64(1) {
			t.Fatalf("remove group: %d %v", r.Status, r.Body)
		}
		r = call(t, h, "GET", "/api/v1/cases/T20260001/access", "read-token", "")
		if as, _ := r.Body["access"].([]any); r.Status != 200 || len(as) != 2 { // dan (invite), nick (retained)
			t.Fatalf("access records: %d %v", r.Status, r.Body)
		}
		r = call(t, h, "POST", "/api/v1/cases/T20260001/domains", "write-token", `{"domain":"johnson.co.uk.cjsm.net","defendants":["Jones"]}`)
		if r.Status != 201 {
			t.Fatalf("add domain: %d %v", r.Status, r.Body)
		}
		did, _ := r.Body["id"].(string)
		if r := call(t, h, "DELETE", "/api/v1/cases/T20260001/domains/"+did, "write-token", ""); r.Status != 200 || r.Body["retainedUsers"] != float64(0) {
			t.Fatalf("remove domain: %d %v", r.Status, r.Body)
		}
		if r := call(t, h, "POST", "/api/v1/cases", "write-token", `{"ref":"T20260002","defendants":["A"],"owners":["ola"]}`); r.Status != 201 {
			t.Fatalf("create case: %d %v", r.Status, r.Body)
		}
		if r := call(t, h, "POST", "/api/v1/cases", "write-token", `{"ref":"T20260002"}`); r.Status != 409 || errField(r) != "ref" {
			t.Fatalf("duplicate case: %d %v", r.Status, r.Body)
		}
		if r := call(t, h, "GET", "/api/v1/cases/T20260002", "read-token", ""); r.Status != 200 || len(r.Body["invites"].([]any)) != 1 {
			t.Fatalf("get case: %d %v", r.Status, r.Body)
		}
		// Every change above is audited with the token that made it: the
		// writer for changes, the reader for the access its decisions recorded.
		byAction := map[string]map[string]bool{}
		i := 0
		_ = e.st.Audit(e.ctx, storeFilter(""), func(ev auditEvent) error {
			if i++; i <= before {
				return nil // the seed
			}
			if byAction[ev.Action] == nil {
				byAction[ev.Action] = map[string]bool{}
			}
			byAction[ev.Action][ev.Actor] = true
			if ev.RequestID == "" {
				t.Errorf("%s by %s has no request id", ev.Action, ev.Actor)
			}
			return nil
		})
		for action, actor := range map[string]string{
			"case.invite.create": "admin:writer", "case.invite.expiry": "admin:writer", "case.invite.revoke": "admin:writer",
			"case.group.add": "admin:writer", "case.group.remove": "admin:writer", "case.domain.add": "admin:writer",
			"case.domain.remove": "admin:writer", "case.create": "admin:writer", "case.access.retain": "admin:writer",
			"case.access.first": "admin:reader",
		} {
			if len(byAction[action]) != 1 || !byAction[action][actor] {
				t.Errorf("%s audited by %v, want %s only", action, byAction[action], actor)
			}
		}
	})
}
