package scim

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// replayStep is one request of an identity provider's sequence, written
// from the provider's public documentation (see testdata/replay/*.json).
type replayStep struct {
	Name    string            `json:"name"`
	Client  string            `json:"client,omitempty"` // entra (default), okta, authentik
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    json.RawMessage   `json:"body,omitempty"`
	Status  int               `json:"status"`
	Capture string            `json:"capture,omitempty"` // name the response's id
	// Expect lists substrings the (normalised) response must contain.
	Expect []string `json:"expect,omitempty"`
}

type replayResult struct {
	Name     string          `json:"name"`
	Request  string          `json:"request"`
	Status   int             `json:"status"`
	Location string          `json:"location,omitempty"`
	ETag     string          `json:"etag,omitempty"`
	Body     json.RawMessage `json:"body,omitempty"`
}

var timeRE = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`)

func TestReplay(t *testing.T) {
	for _, idp := range []string{"entra", "okta", "authentik"} {
		t.Run(idp, func(t *testing.T) {
			bothStores(t, func(t *testing.T, e *env) { runReplay(t, e, idp) })
		})
	}
}

func runReplay(t *testing.T, e *env, idp string) {
	raw, err := os.ReadFile(filepath.Join("testdata", "replay", idp+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var steps []replayStep
	if err := json.Unmarshal(raw, &steps); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{} // name -> id
	subst := func(s string) string {
		for n, id := range ids {
			s = strings.ReplaceAll(s, "{{"+n+"}}", id)
		}
		return s
	}
	normalise := func(s string) string {
		// longest ids first so that no id is a prefix of another's replacement
		names := make([]string, 0, len(ids))
		for n := range ids {
			names = append(names, n)
		}
		sort.Slice(names, func(i, j int) bool { return len(ids[names[i]]) > len(ids[names[j]]) })
		for _, n := range names {
			s = strings.ReplaceAll(s, ids[n], "{{"+n+"}}")
		}
		return timeRE.ReplaceAllString(s, "<time>")
	}
	tokens := map[string]string{"": tokEntra, "entra": tokEntra, "okta": tokOkta, "authentik": tokAuthk}
	var results []replayResult
	for _, s := range steps {
		hdr := []string{"Authorization", "Bearer " + tokens[s.Client]}
		for k, v := range s.Headers {
			hdr = append(hdr, k, subst(v))
		}
		var body any
		if len(s.Body) > 0 {
			body = []byte(subst(string(s.Body)))
		}
		r := e.do(s.Method, subst(s.Path), body, hdr...)
		if r.Status != s.Status {
			t.Errorf("%s: status %d, want %d: %s", s.Name, r.Status, s.Status, r.Raw)
		}
		if s.Capture != "" {
			id, _ := r.Body["id"].(string)
			if id == "" {
				t.Fatalf("%s: no id to capture: %s", s.Name, r.Raw)
			}
			ids[s.Capture] = id
		}
		res := replayResult{Name: s.Name, Request: s.Method + " " + s.Path, Status: r.Status,
			Location: normalise(r.Header.Get("Location")), ETag: r.Header.Get("ETag")}
		if len(r.Raw) > 0 {
			var v any
			if err := json.Unmarshal(r.Raw, &v); err != nil {
				t.Fatalf("%s: response is not JSON: %s", s.Name, r.Raw)
			}
			var b bytes.Buffer
			enc := json.NewEncoder(&b)
			enc.SetEscapeHTML(false)
			_ = enc.Encode(v) // sorted keys
			res.Body = sortMembers(t, normalise(strings.TrimSpace(b.String())))
		}
		for _, want := range s.Expect {
			if !strings.Contains(string(res.Body), want) {
				t.Errorf("%s: response lacks %s: %s", s.Name, want, res.Body)
			}
		}
		results = append(results, res)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(results); err != nil {
		t.Fatal(err)
	}
	got := buf.Bytes()
	golden := filepath.Join("testdata", "replay", idp+".golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./scim -run TestReplay -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("replay differs from %s (run with -update and review the diff):\n%s", golden, firstDiff(string(want), string(got)))
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) && i < len(bl); i++ {
		if al[i] != bl[i] {
			return "line " + itoa(i+1) + ":\n- " + al[i] + "\n+ " + bl[i]
		}
	}
	return "length differs"
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// sortMembers orders members and groups arrays by their (normalised)
// value: the server lists them in id order, and ids are random.
func sortMembers(t *testing.T, s string) json.RawMessage {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	var walk func(any)
	walk = func(x any) {
		switch x := x.(type) {
		case map[string]any:
			for k, e := range x {
				if l, ok := e.([]any); ok && (k == "members" || k == "groups") {
					sort.SliceStable(l, func(i, j int) bool {
						a, _ := l[i].(map[string]any)
						b, _ := l[j].(map[string]any)
						return fmt.Sprint(a["value"]) < fmt.Sprint(b["value"])
					})
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return json.RawMessage(strings.TrimSpace(b.String()))
}
