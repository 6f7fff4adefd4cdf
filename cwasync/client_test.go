package cwasync_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dirsyncd/dirsyncd/cwasync"
	"github.com/dirsyncd/dirsyncd/cwasync/cwafake"
)

const apiKey = "s3cret-api-key"

// sleeps records the waits the client asks for instead of sleeping.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = append(s.d, d)
	return ctx.Err()
}

func (s *sleeps) get() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.d)
}

func loadFixture(t *testing.T) *cwafake.Fixture {
	t.Helper()
	fx, err := cwafake.LoadFixture("cwafake/testdata/fixture.json")
	if err != nil {
		t.Fatal(err)
	}
	return fx
}

func newClient(t *testing.T, url string, mod func(*cwasync.ClientOptions)) (*cwasync.Client, *sleeps) {
	t.Helper()
	sl := &sleeps{}
	o := cwasync.ClientOptions{BaseURL: url, APIKey: apiKey, Timeout: 2 * time.Second, MaxAttempts: 4,
		Backoff: 100 * time.Millisecond, MaxBackoff: time.Second, MaxRetryAfter: time.Minute,
		Sleep: sl.sleep, Jitter: func() float64 { return 0.5 }}
	if mod != nil {
		mod(&o)
	}
	c, err := cwasync.NewClient(o)
	if err != nil {
		t.Fatal(err)
	}
	return c, sl
}

func fakeServer(t *testing.T) (*cwafake.Handler, *httptest.Server) {
	t.Helper()
	h := cwafake.NewHandler(loadFixture(t), apiKey)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv
}

func TestClientEndpoints(t *testing.T) {
	_, srv := fakeServer(t)
	c, _ := newClient(t, srv.URL, nil)
	ctx := context.Background()

	rows, err := c.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 || rows[0].FirmNumber != "3856" || rows[0].OfficeAccountNumber != "0Q731M" ||
		rows[1].OfficeAddressLine2 != "Floor 3" || rows[3].ParentFirmNumber != "4001" || rows[3].FirmType != "Advocate" {
		t.Errorf("snapshot rows: %+v", rows)
	}
	users, err := c.FirmUsers(ctx, "3856")
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 || users[0] != (cwasync.ProviderUser{UserLogin: "JSMITH", FirstName: "John", LastName: "Smith", Email: "J.Smith@smith.example"}) {
		t.Errorf("firm users: %+v", users)
	}
	codes, err := c.UserOffices(ctx, "ABROWN")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(codes, []string{"0Q731M", "1A001L"}) {
		t.Errorf("user offices: %v", codes)
	}
	login, ok, err := c.LoginByEmail(ctx, "j.smith@SMITH.example")
	if err != nil || !ok || login != "JSMITH" {
		t.Errorf("LoginByEmail: %q %v %v", login, ok, err)
	}
	if _, ok, err := c.LoginByEmail(ctx, "nobody@x.example"); ok || err != nil {
		t.Errorf("LoginByEmail(unknown): %v %v, want not found without error", ok, err)
	}
	if _, err := c.FirmUsers(ctx, "9999"); !errors.Is(err, cwasync.ErrNotFound) {
		t.Errorf("unknown firm: %v, want ErrNotFound (an error, never an empty list)", err)
	}
}

func TestClientFirmNumberAsNumber(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"offices":[{"firmNumber":3856,"firmName":"A","firmType":"Chambers","parentFirmNumber":null,"officeAccountNumber":"0Q731M","extra":1}]}`))
	}))
	t.Cleanup(srv.Close)
	c, _ := newClient(t, srv.URL, nil)
	rows, err := c.Snapshot(context.Background())
	if err != nil || len(rows) != 1 || rows[0].FirmNumber != "3856" || rows[0].ParentFirmNumber != "" {
		t.Fatalf("rows %+v err %v", rows, err)
	}
}

func TestClientRetries(t *testing.T) {
	tests := []struct {
		name      string
		fault     cwafake.Fault
		wantSleep []time.Duration
		wantErr   error // nil: succeeds after the fault's Times
	}{
		{name: "500 then ok", fault: cwafake.Fault{Kind: cwafake.FaultServerError, Times: 2},
			// backoff 100ms·2^(n-1), jitter 0.5 → ×0.75
			wantSleep: []time.Duration{75 * time.Millisecond, 150 * time.Millisecond}},
		{name: "429 honours Retry-After", fault: cwafake.Fault{Kind: cwafake.FaultTooManyRequests, RetryAfter: 7 * time.Second, Times: 1},
			wantSleep: []time.Duration{7 * time.Second}},
		{name: "truncated body then ok", fault: cwafake.Fault{Kind: cwafake.FaultTruncated, Times: 1},
			wantSleep: []time.Duration{75 * time.Millisecond}},
		{name: "500 persists", fault: cwafake.Fault{Kind: cwafake.FaultServerError},
			wantSleep: []time.Duration{75 * time.Millisecond, 150 * time.Millisecond, 300 * time.Millisecond}, wantErr: &cwasync.StatusError{}},
		{name: "truncated persists", fault: cwafake.Fault{Kind: cwafake.FaultTruncated},
			wantSleep: []time.Duration{75 * time.Millisecond, 150 * time.Millisecond, 300 * time.Millisecond}, wantErr: errAny},
		{name: "out of hours fails at once", fault: cwafake.Fault{Kind: cwafake.FaultOutOfHours}, wantErr: cwasync.ErrUnavailable},
		{name: "429 with a long Retry-After fails at once", fault: cwafake.Fault{Kind: cwafake.FaultTooManyRequests, RetryAfter: time.Hour},
			wantErr: cwasync.ErrUnavailable},
		{name: "401 is not retried", fault: cwafake.Fault{Kind: cwafake.FaultUnauthorized}, wantErr: cwasync.ErrUnauthorized},
		{name: "malformed JSON is not retried", fault: cwafake.Fault{Kind: cwafake.FaultMalformed}, wantErr: cwasync.ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, srv := fakeServer(t)
			h.Inject(tc.fault)
			c, sl := newClient(t, srv.URL, nil)
			rows, err := c.Snapshot(context.Background())
			switch {
			case tc.wantErr == nil && (err != nil || len(rows) != 4):
				t.Fatalf("want success after retries, got %d rows, %v", len(rows), err)
			case tc.wantErr == errAny && err == nil:
				t.Fatal("want an error")
			case tc.wantErr != nil && tc.wantErr != errAny:
				var se *cwasync.StatusError
				if _, isStatus := tc.wantErr.(*cwasync.StatusError); isStatus {
					if !errors.As(err, &se) || se.Status != 500 {
						t.Fatalf("err %v, want HTTP 500", err)
					}
				} else if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
			}
			if got := sl.get(); !slices.Equal(got, tc.wantSleep) {
				t.Errorf("sleeps %v, want %v", got, tc.wantSleep)
			}
			if want := int64(len(tc.wantSleep) + 1); h.RequestsTo("snapshot") != want {
				t.Errorf("%d requests, want %d", h.RequestsTo("snapshot"), want)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestClientBackoffCapAndJitter(t *testing.T) {
	h, srv := fakeServer(t)
	h.Inject(cwafake.Fault{Kind: cwafake.FaultServerError})
	c, sl := newClient(t, srv.URL, func(o *cwasync.ClientOptions) {
		o.MaxAttempts, o.Backoff, o.MaxBackoff = 6, time.Second, 4*time.Second
		n := 0
		o.Jitter = func() float64 { n++; return []float64{0, 0.999, 0, 0.999, 0}[n-1] }
	})
	if _, err := c.Snapshot(context.Background()); err == nil {
		t.Fatal("want an error")
	}
	// 1s,2s,4s,8s→4s(cap),16s→4s; jitter scales into [0.5,1).
	want := []time.Duration{500 * time.Millisecond, 1999 * time.Millisecond, 2 * time.Second, 3998 * time.Millisecond, 2 * time.Second}
	got := sl.get()
	if len(got) != len(want) {
		t.Fatalf("sleeps %v, want %v", got, want)
	}
	for i := range want {
		if d := got[i] - want[i]; d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("sleep %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestClientConnectionErrorRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	c, sl := newClient(t, "http://"+addr, nil)
	_, err = c.Snapshot(context.Background())
	if err == nil || !strings.Contains(err.Error(), "after 4 attempts") {
		t.Fatalf("err %v, want failure after 4 attempts", err)
	}
	if len(sl.get()) != 3 {
		t.Errorf("sleeps %v, want 3 retries", sl.get())
	}
}

func TestClientTimeoutPerAttempt(t *testing.T) {
	h, srv := fakeServer(t)
	h.Inject(cwafake.Fault{Kind: cwafake.FaultLatency, Latency: time.Hour, Times: 1})
	c, sl := newClient(t, srv.URL, func(o *cwasync.ClientOptions) { o.Timeout = 50 * time.Millisecond })
	rows, err := c.Snapshot(context.Background())
	if err != nil || len(rows) != 4 {
		t.Fatalf("want the retry after the timed-out attempt to succeed: %d rows, %v", len(rows), err)
	}
	if len(sl.get()) != 1 {
		t.Errorf("sleeps %v, want one retry", sl.get())
	}
}

func TestClientContextCancelNotRetried(t *testing.T) {
	h, srv := fakeServer(t)
	h.Inject(cwafake.Fault{Kind: cwafake.FaultServerError})
	c, _ := newClient(t, srv.URL, func(o *cwasync.ClientOptions) {
		o.Sleep = func(ctx context.Context, d time.Duration) error { return context.Canceled }
	})
	if _, err := c.Snapshot(context.Background()); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

func TestClientAPIKeyNeverLogged(t *testing.T) {
	h, srv := fakeServer(t)
	h.Inject(cwafake.Fault{Kind: cwafake.FaultServerError, Times: 1})
	core, logs := observer.New(zapcore.DebugLevel)
	c, _ := newClient(t, srv.URL, func(o *cwasync.ClientOptions) { o.Log = zap.New(core) })
	if _, err := c.Snapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	if logs.Len() == 0 {
		t.Fatal("the retry was not logged")
	}
	var buf bytes.Buffer
	for _, e := range logs.All() {
		buf.WriteString(e.Message)
		for k, v := range e.ContextMap() {
			buf.WriteString(k)
			buf.WriteString(strings.TrimSpace(strings.ReplaceAll(strings.ReplaceAll(toString(v), "\n", ""), " ", "")))
		}
	}
	if strings.Contains(buf.String(), apiKey) {
		t.Fatal("the API key appears in a log line")
	}
	// And a wrong key is refused with an error that does not carry it.
	c2, _ := newClient(t, srv.URL, func(o *cwasync.ClientOptions) { o.APIKey = "wrong-key-value" })
	_, err := c2.Snapshot(context.Background())
	if !errors.Is(err, cwasync.ErrUnauthorized) || strings.Contains(err.Error(), "wrong-key-value") {
		t.Fatalf("err %v, want ErrUnauthorized without the key", err)
	}
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	if e, ok := v.(error); ok {
		return e.Error()
	}
	return ""
}

func TestClientBodyLimit(t *testing.T) {
	_, srv := fakeServer(t)
	c, sl := newClient(t, srv.URL, func(o *cwasync.ClientOptions) { o.MaxBodyBytes = 100 })
	if _, err := c.Snapshot(context.Background()); !errors.Is(err, cwasync.ErrMalformed) {
		t.Fatalf("err %v, want ErrMalformed for an oversized body", err)
	}
	if len(sl.get()) != 0 {
		t.Errorf("an oversized body was retried: %v", sl.get())
	}
}

func TestClientMissingArray(t *testing.T) {
	for _, body := range []string{`{}`, `{"offices":null}`, `{"offices":[]} trailing`, `[]`} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(body)) }))
		c, _ := newClient(t, srv.URL, nil)
		if _, err := c.Snapshot(context.Background()); !errors.Is(err, cwasync.ErrMalformed) {
			t.Errorf("body %s: err %v, want ErrMalformed (a partial answer is never an empty directory)", body, err)
		}
		srv.Close()
	}
}

// TestClientEscapesPathSegments: a login or firm number with reserved
// characters is escaped once on the wire (not twice, not split at "/").
func TestClientEscapesPathSegments(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.URL.EscapedPath())
		mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/provider-users") {
			_, _ = w.Write([]byte(`{"users":[]}`))
			return
		}
		_, _ = w.Write([]byte(`{"officeCodes":[]}`))
	}))
	t.Cleanup(srv.Close)
	c, _ := newClient(t, srv.URL+"/api/v1", nil)
	if _, err := c.UserOffices(context.Background(), "J SMITH/2"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.FirmUsers(context.Background(), "38 56"); err != nil {
		t.Fatal(err)
	}
	want := []string{"/api/v1/provider-users/J%20SMITH%2F2/provider-offices", "/api/v1/provider-firms/38%2056/provider-users"}
	if !slices.Equal(got, want) {
		t.Errorf("paths on the wire %q, want %q", got, want)
	}
}
