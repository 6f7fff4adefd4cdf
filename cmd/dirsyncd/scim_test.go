package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/store"
)

// TestServeSCIM: `serve` mounts the SCIM server at /scim/v2 behind the
// configured tokens (scope scim; a SCIM 401 otherwise, 403 for a token
// without the scope), with absolute locations under server.publicURL, and
// the client's name as audit actor.
func TestServeSCIM(t *testing.T) {
	cfg, db := writeConfig(t, "")
	doc := readFile(t, cfg)
	doc = strings.Replace(doc, "tokens:\n", "tokens:\n  - {name: entra, token: entra-secret-token-1234, scopes: [scim], rateLimit: 100}\n", 1)
	doc = strings.Replace(doc, `server: {listen: "127.0.0.1:0", shutdownTimeout: 5s}`,
		`server: {listen: "127.0.0.1:0", publicURL: "https://dirsyncd.example", shutdownTimeout: 5s}`, 1)
	writeFile(t, cfg, doc)
	addrc := make(chan net.Addr, 1)
	testServeReady = func(a net.Addr) { addrc <- a }
	t.Cleanup(func() { testServeReady = nil })
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() { done <- execute(ctx, []string{"serve", "--config", cfg}, &out, &errb) }()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case code := <-done:
		cancel()
		t.Fatalf("serve exited %d: %s", code, errb.String())
	}
	base := "http://" + addr.String() + "/scim/v2"
	call := func(method, path, tok, body string) (*http.Response, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		req.Header.Set("Content-Type", "application/scim+json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		return res, m
	}
	if res, m := call("GET", "/Users", "", ""); res.StatusCode != 401 || m["status"] != "401" {
		t.Errorf("no token: %d %v", res.StatusCode, m)
	}
	if res, _ := call("GET", "/Users", "ops-secret-token-1234", ""); res.StatusCode != 403 {
		t.Errorf("token without scim scope: %d", res.StatusCode)
	}
	res, m := call("POST", "/Users", "entra-secret-token-1234",
		`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"served@example.org","externalId":"e-1"}`)
	id, _ := m["id"].(string)
	if res.StatusCode != 201 || id == "" || res.Header.Get("Location") != "https://dirsyncd.example/scim/v2/Users/"+id {
		t.Fatalf("POST /Users: %d Location %q %v", res.StatusCode, res.Header.Get("Location"), m)
	}
	if res, m := call("GET", `/Users?filter=externalId%20eq%20%22e-1%22`, "entra-secret-token-1234", ""); res.StatusCode != 200 || m["totalResults"] != float64(1) {
		t.Errorf("lookup: %d %v", res.StatusCode, m)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exit %d: %s", code, errb.String())
	}
	if strings.Contains(errb.String(), "entra-secret-token-1234") {
		t.Error("the SCIM token reached the log")
	}
	st := openTestStore(t, db)
	defer st.Close()
	var actor string
	_ = st.Audit(context.Background(), store.AuditFilter{ObjectID: id, Action: "user.create"}, func(e audit.Event) error { actor = e.Actor; return nil })
	if actor != "scim:entra" {
		t.Errorf("audit actor %q, want scim:entra", actor)
	}
}
