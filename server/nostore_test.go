package server

import "testing"

// TestAPIAnswersAreNotStored: every JSON answer of the API (runs and their
// items hold personal data) says Cache-Control: no-store, errors too.
func TestAPIAnswersAreNotStored(t *testing.T) {
	e := newEnv(t)
	ids := seedRuns(t, e.st)
	for _, path := range []string{"/api/v1/runs", "/api/v1/runs/" + ids[0], "/api/v1/runs/no-such-run"} {
		r := e.do(t, "GET", path, tokRead, "")
		if got := r.header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("GET %s (%d): Cache-Control %q, want no-store", path, r.code, got)
		}
	}
	if r := e.do(t, "GET", "/api/v1/runs", "", ""); r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("401 answer: Cache-Control %q", r.header.Get("Cache-Control"))
	}
}
