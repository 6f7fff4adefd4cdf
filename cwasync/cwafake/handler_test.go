package cwafake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/cwasync/cwafake"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

const key = "test-key"

func newFake(t *testing.T) (*cwafake.Handler, *httptest.Server) {
	t.Helper()
	fx, err := cwafake.LoadFixture("testdata/fixture.json")
	if err != nil {
		t.Fatal(err)
	}
	h := cwafake.NewHandler(fx, key)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv
}

func get(t *testing.T, srv *httptest.Server, path, apiKey string) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if apiKey != "" {
		req.Header.Set("X-Authorization", apiKey)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// TestDocumentedShapes checks every endpoint's status and body against a
// golden file written in the shape DOMAIN.md documents.
func TestDocumentedShapes(t *testing.T) {
	_, srv := newFake(t)
	tests := []struct {
		name, path string
		status     int
	}{
		{"snapshot", "/provider-offices/snapshot", 200},
		{"firm_users", "/provider-firms/3856/provider-users", 200},
		{"firm_users_none", "/provider-firms/4001/provider-users", 200},
		{"firm_users_unknown", "/provider-firms/9999/provider-users", 404},
		{"user_offices", "/provider-users/ABROWN/provider-offices", 200},
		{"user_offices_unknown", "/provider-users/NOBODY/provider-offices", 404},
		{"user_exists", "/provider-users/exists?userEmail=j.smith%40SMITH.example", 200},
		{"user_exists_unknown", "/provider-users/exists?userEmail=x%40y.example", 404},
		{"user_exists_no_email", "/provider-users/exists", 400},
		{"unknown_endpoint", "/provider-offices", 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body, err := get(t, srv, tc.path, key)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, body, "", "  "); err != nil {
				t.Fatalf("body is not JSON: %v: %s", err, body)
			}
			pretty.WriteByte('\n')
			golden := filepath.Join("testdata", tc.name+".golden.json")
			if *update {
				if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if !bytes.Equal(pretty.Bytes(), want) {
				t.Errorf("body differs from %s:\n got: %s\nwant: %s", golden, pretty.Bytes(), want)
			}
		})
	}
}

// TestSnapshotFieldNames pins the documented field names independently of
// the golden files.
func TestSnapshotFieldNames(t *testing.T) {
	_, srv := newFake(t)
	_, body, err := get(t, srv, "/provider-offices/snapshot", key)
	if err != nil {
		t.Fatal(err)
	}
	var snap struct {
		Offices []map[string]string `json:"offices"`
	}
	if err := json.Unmarshal(body, &snap); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{"firmNumber": true, "firmName": true, "firmType": true, "parentFirmNumber": true,
		"officeAccountNumber": true, "officeAddressLine1": true, "officeAddressLine2": true, "officeAddressLine3": true,
		"officeAddressCity": true, "officeAddressPostcode": true}
	if len(snap.Offices) != 4 {
		t.Fatalf("%d offices, want 4", len(snap.Offices))
	}
	for _, o := range snap.Offices {
		for k := range o {
			if !documented[k] {
				t.Errorf("undocumented snapshot field %q", k)
			}
		}
		switch o["firmType"] {
		case "Legal Services Provider", "Chambers", "Advocate":
		default:
			t.Errorf("firmType %q is not spelled as documented", o["firmType"])
		}
	}
}

func TestAPIKey(t *testing.T) {
	_, srv := newFake(t)
	for _, k := range []string{"", "wrong"} {
		resp, body, err := get(t, srv, "/provider-offices/snapshot", k)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "UNAUTHORIZED") {
			t.Errorf("key %q: status %d %s, want 401", k, resp.StatusCode, body)
		}
	}
}

func TestFaults(t *testing.T) {
	tests := []struct {
		name   string
		fault  cwafake.Fault
		status int
		check  func(t *testing.T, resp *http.Response, body []byte, err error)
	}{
		{name: "500", fault: cwafake.Fault{Kind: cwafake.FaultServerError}, status: 500},
		{name: "429", fault: cwafake.Fault{Kind: cwafake.FaultTooManyRequests, RetryAfter: 7 * time.Second}, status: 429,
			check: func(t *testing.T, resp *http.Response, _ []byte, _ error) {
				if ra := resp.Header.Get("Retry-After"); ra != "7" {
					t.Errorf("Retry-After %q, want 7", ra)
				}
			}},
		{name: "401", fault: cwafake.Fault{Kind: cwafake.FaultUnauthorized}, status: 401},
		{name: "out_of_hours", fault: cwafake.Fault{Kind: cwafake.FaultOutOfHours}, status: 503,
			check: func(t *testing.T, _ *http.Response, body []byte, _ error) {
				if !strings.Contains(string(body), `"code":"OUT_OF_HOURS"`) {
					t.Errorf("body %s lacks the OUT_OF_HOURS code", body)
				}
			}},
		{name: "malformed", fault: cwafake.Fault{Kind: cwafake.FaultMalformed}, status: 200,
			check: func(t *testing.T, _ *http.Response, body []byte, _ error) {
				if json.Valid(body) {
					t.Errorf("malformed fault served valid JSON: %s", body)
				}
			}},
		{name: "truncated", fault: cwafake.Fault{Kind: cwafake.FaultTruncated}, status: 200,
			check: func(t *testing.T, _ *http.Response, _ []byte, err error) {
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("read error %v, want unexpected EOF", err)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, srv := newFake(t)
			tc.fault.Times = 1
			tc.fault.Path = "/provider-offices/"
			h.Inject(tc.fault)
			// Another path is not affected.
			if resp, _, err := get(t, srv, "/provider-firms/3856/provider-users", key); err != nil || resp.StatusCode != 200 {
				t.Fatalf("unaffected path: %v %v", resp, err)
			}
			resp, body, err := get(t, srv, "/provider-offices/snapshot", key)
			if resp == nil {
				t.Fatalf("request failed: %v", err)
			}
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.check != nil {
				tc.check(t, resp, body, err)
			}
			// Times: 1 — the next request is served normally.
			resp, body, err = get(t, srv, "/provider-offices/snapshot", key)
			if err != nil || resp.StatusCode != 200 || !json.Valid(body) {
				t.Errorf("after the fault: %v %v %s", resp, err, body)
			}
		})
	}
}

func TestLatencyFault(t *testing.T) {
	h, srv := newFake(t)
	h.Inject(cwafake.Fault{Kind: cwafake.FaultLatency, Latency: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/provider-offices/snapshot", nil)
	req.Header.Set("X-Authorization", key)
	_, err := srv.Client().Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the client's deadline to expire first", err)
	}
	h.ClearFaults()
	if resp, _, err := get(t, srv, "/provider-offices/snapshot", key); err != nil || resp.StatusCode != 200 {
		t.Fatalf("after ClearFaults: %v %v", resp, err)
	}
}

func TestPersistentFaultAndCounts(t *testing.T) {
	h, srv := newFake(t)
	h.Inject(cwafake.Fault{Kind: cwafake.FaultServerError, Path: "/provider-users/"})
	for i := 0; i < 3; i++ {
		resp, _, err := get(t, srv, "/provider-users/JSMITH/provider-offices", key)
		if err != nil || resp.StatusCode != 500 {
			t.Fatalf("attempt %d: %v %v, want 500 until cleared", i, resp, err)
		}
	}
	if got := h.RequestsTo("user-offices"); got != 3 {
		t.Errorf("RequestsTo(user-offices) = %d, want 3", got)
	}
	if got := h.Requests(); got != 3 {
		t.Errorf("Requests() = %d, want 3", got)
	}
}

func TestSetFixture(t *testing.T) {
	h, srv := newFake(t)
	fx := h.Fixture()
	fx.Users = fx.Users[:1]
	h.SetFixture(fx)
	_, body, err := get(t, srv, "/provider-firms/3856/provider-users", key)
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Users []map[string]string `json:"users"`
	}
	if err := json.Unmarshal(body, &v); err != nil || len(v.Users) != 1 || v.Users[0]["userLogin"] != "JSMITH" {
		t.Fatalf("users after SetFixture: %s (%v)", body, err)
	}
}

func TestServerRun(t *testing.T) {
	h := cwafake.NewHandler(&cwafake.Fixture{}, key)
	s, err := cwafake.Listen("127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	req, _ := http.NewRequest(http.MethodGet, s.URL()+"/provider-offices/snapshot", nil)
	req.Header.Set("X-Authorization", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != `{"offices":[]}` {
		t.Errorf("empty snapshot body %s", b)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestGenerate(t *testing.T) {
	fx := cwafake.Generate(cwafake.GenOptions{Firms: 50, OfficesPerFirm: 3, Logins: 200})
	if len(fx.Offices) != 150 || len(fx.Users) != 200 {
		t.Fatalf("%d offices, %d users", len(fx.Offices), len(fx.Users))
	}
	seen := map[string]bool{}
	for _, o := range fx.Offices {
		if len(o.OfficeAccountNumber) != 6 || seen[o.OfficeAccountNumber] {
			t.Fatalf("bad or duplicate office code %q", o.OfficeAccountNumber)
		}
		seen[o.OfficeAccountNumber] = true
	}
	for _, u := range fx.Users {
		for _, c := range u.OfficeCodes {
			if !seen[c] {
				t.Fatalf("login %s has unknown office %s", u.UserLogin, c)
			}
		}
	}
}

func TestLoadFixtureRejectsUnknownKeys(t *testing.T) {
	if _, err := cwafake.ParseFixture([]byte(`{"offices":[],"userz":[]}`)); err == nil {
		t.Fatal("unknown key accepted")
	}
}
