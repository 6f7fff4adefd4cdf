package cwafake_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/cwasync/cwafake"
)

// TestLeanServerSameAnswers: ServeLean (the benchmark's server) answers
// every endpoint, error and fault exactly as net/http serving the same
// Handler does: status, Content-Type, Content-Length, Retry-After and body
// byte for byte; a truncated answer ends in an unexpected EOF; a latency
// fault waits; connections are kept alive.
func TestLeanServerSameAnswers(t *testing.T) {
	fx, err := cwafake.LoadFixture("testdata/fixture.json")
	if err != nil {
		t.Fatal(err)
	}
	std := cwafake.NewHandler(fx, key)
	stdSrv := httptest.NewServer(std)
	t.Cleanup(stdSrv.Close)
	lean := cwafake.NewHandler(fx, key)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cwafake.ServeLean(ln, lean) }()
	t.Cleanup(func() {
		_ = ln.Close()
		if err := <-done; err != nil {
			t.Errorf("ServeLean: %v", err)
		}
	})
	leanURL := "http://" + ln.Addr().String()
	var dials int
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials++
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	leanClient := &http.Client{Transport: tr}
	fetch := func(c *http.Client, url, path, apiKey string) (*http.Response, []byte, error) {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url+path, nil)
		if apiKey != "" {
			req.Header.Set("X-Authorization", apiKey)
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
	compare := func(t *testing.T, path, apiKey string) {
		t.Helper()
		r1, b1, err1 := fetch(stdSrv.Client(), stdSrv.URL, path, apiKey)
		r2, b2, err2 := fetch(leanClient, leanURL, path, apiKey)
		if r1 == nil || r2 == nil {
			t.Fatalf("%s: net/http %v, lean %v", path, err1, err2)
		}
		if (err1 == nil) != (err2 == nil) || r1.StatusCode != r2.StatusCode || string(b1) != string(b2) {
			t.Errorf("%s: net/http %d %v %q; lean %d %v %q", path, r1.StatusCode, err1, b1, r2.StatusCode, err2, b2)
		}
		for _, h := range []string{"Content-Type", "Content-Length", "Retry-After"} {
			if !slices.Equal(r1.Header.Values(h), r2.Header.Values(h)) {
				t.Errorf("%s: %s net/http %q, lean %q", path, h, r1.Header.Values(h), r2.Header.Values(h))
			}
		}
	}
	paths := []string{
		"/provider-offices/snapshot",
		"/provider-firms/3856/provider-users",
		"/provider-firms/0000/provider-users",
		"/provider-users/JSMITH/provider-offices",
		"/provider-users/NOBODY/provider-offices",
		"/provider-users/exists?userEmail=J.Smith%40smith.example",
		"/provider-users/exists?userEmail=nobody%40example.test",
		"/provider-users/exists",
		"/no/such/endpoint",
	}
	for _, p := range paths {
		compare(t, p, key)
	}
	compare(t, "/provider-offices/snapshot", "")
	compare(t, "/provider-offices/snapshot", "wrong")
	if dials != 1 {
		t.Errorf("lean server: %d connections for %d requests, want 1 (keep-alive)", dials, len(paths)+2)
	}
	for _, f := range []cwafake.Fault{
		{Kind: cwafake.FaultServerError},
		{Kind: cwafake.FaultTooManyRequests, RetryAfter: 7 * time.Second},
		{Kind: cwafake.FaultUnauthorized},
		{Kind: cwafake.FaultOutOfHours, RetryAfter: time.Hour},
		{Kind: cwafake.FaultMalformed},
	} {
		t.Run(f.Kind.String(), func(t *testing.T) {
			f.Times = 1
			std.Inject(f)
			lean.Inject(f)
			compare(t, "/provider-users/JSMITH/provider-offices", key)
		})
	}
	t.Run("truncated", func(t *testing.T) {
		lean.Inject(cwafake.Fault{Kind: cwafake.FaultTruncated, Times: 1})
		resp, _, err := fetch(leanClient, leanURL, "/provider-offices/snapshot", key)
		if resp == nil || resp.StatusCode != 200 || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("truncated: %v, err %v; want 200 and an unexpected EOF", resp, err)
		}
		compare(t, "/provider-offices/snapshot", key) // served normally again, on a new connection
	})
	t.Run("latency", func(t *testing.T) {
		lean.Inject(cwafake.Fault{Kind: cwafake.FaultLatency, Latency: time.Hour, Times: 1})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, leanURL+"/provider-offices/snapshot", nil)
		req.Header.Set("X-Authorization", key)
		if _, err := leanClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err %v, want the client's deadline to expire first", err)
		}
	})
}
