package cwafake

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultAPIKeyHeader is the header the fake reads the API key from.
const DefaultAPIKeyHeader = "X-Authorization"

// FaultKind is a switchable misbehaviour.
type FaultKind int

// Faults.
const (
	FaultLatency         FaultKind = iota + 1 // wait Latency, then answer normally
	FaultServerError                          // 500
	FaultTooManyRequests                      // 429 with Retry-After
	FaultUnauthorized                         // 401 whatever the key
	FaultTruncated                            // 200 whose body stops half-way (Content-Length promises more)
	FaultMalformed                            // 200 whose body is not JSON
	FaultOutOfHours                           // 503 {"code":"OUT_OF_HOURS"}: the service is closed
)

func (k FaultKind) String() string {
	switch k {
	case FaultLatency:
		return "latency"
	case FaultServerError:
		return "500"
	case FaultTooManyRequests:
		return "429"
	case FaultUnauthorized:
		return "401"
	case FaultTruncated:
		return "truncated"
	case FaultMalformed:
		return "malformed"
	case FaultOutOfHours:
		return "out-of-hours"
	}
	return "fault(" + strconv.Itoa(int(k)) + ")"
}

// Fault is one injected misbehaviour. It applies to requests whose path
// starts with Path ("" = every request), for the next Times matching
// requests (0 = until ClearFaults).
type Fault struct {
	Kind       FaultKind
	Path       string
	Times      int
	Latency    time.Duration // FaultLatency
	RetryAfter time.Duration // FaultTooManyRequests (whole seconds on the wire); FaultOutOfHours
}

type activeFault struct {
	Fault
	left int // remaining uses when Times > 0
}

// Handler serves the Provider Data API from a fixture. It is safe for
// concurrent use; the fixture and faults may be changed while serving.
type Handler struct {
	header string
	key    string

	mu      sync.RWMutex
	fx      *Fixture
	snap    []byte            // encoded snapshot
	byFirm  map[string][]byte // firm number of the snapshot -> encoded users
	byLogin map[string][]byte // login -> encoded office codes
	byEmail map[string]string // lower-case e-mail -> login
	faults  []*activeFault    // guarded by mu (write lock to consume)
	nFaults atomic.Int32      // len(faults), read without the lock
	counts  [len(endpoints)]atomic.Int64
	total   atomic.Int64
}

// endpoints the fake serves, as RequestsTo names them.
var endpoints = [...]string{"snapshot", "firm-users", "user-offices", "user-exists"}

type wireUser struct {
	UserLogin string `json:"userLogin"`
	FirstName string `json:"firstName,omitempty"`
	LastName  string `json:"lastName,omitempty"`
	Email     string `json:"email,omitempty"`
}

// NewHandler serves fx to clients presenting apiKey in the X-Authorization
// header.
func NewHandler(fx *Fixture, apiKey string) *Handler {
	h := &Handler{header: DefaultAPIKeyHeader, key: apiKey}
	h.SetFixture(fx)
	return h
}

// SetAPIKeyHeader changes the header the API key is read from.
func (h *Handler) SetAPIKeyHeader(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.header = name
}

// SetFixture replaces the data served.
func (h *Handler) SetFixture(fx *Fixture) {
	fx = fx.Clone()
	snap, err := json.Marshal(map[string]any{"offices": nonNil(fx.Offices)})
	if err != nil { // cannot happen: strings only
		panic("cwafake: encode snapshot: " + err.Error())
	}
	users := map[string][]wireUser{}
	byEmail := map[string]string{}
	for _, u := range fx.Users {
		users[u.FirmNumber] = append(users[u.FirmNumber], wireUser{u.UserLogin, u.FirstName, u.LastName, u.Email})
		if u.Email != "" {
			byEmail[strings.ToLower(u.Email)] = u.UserLogin
		}
	}
	// Bodies are encoded once here, so serving is cheap (the benchmark runs
	// the fake in the same process as the client).
	byFirm := map[string][]byte{}
	for _, o := range fx.Offices {
		if _, done := byFirm[o.FirmNumber]; o.FirmNumber != "" && !done {
			byFirm[o.FirmNumber] = mustJSON(map[string]any{"users": nonNil(users[o.FirmNumber])})
		}
	}
	type code struct {
		FirmOfficeCode string `json:"firmOfficeCode"`
	}
	byLogin := map[string][]byte{}
	for _, u := range fx.Users {
		out := make([]code, 0, len(u.OfficeCodes))
		for _, c := range u.OfficeCodes {
			out = append(out, code{c})
		}
		byLogin[u.UserLogin] = mustJSON(map[string]any{"officeCodes": out})
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fx, h.snap, h.byFirm, h.byLogin, h.byEmail = fx, snap, byFirm, byLogin, byEmail
}

// Fixture returns a copy of the data served.
func (h *Handler) Fixture() *Fixture {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.fx.Clone()
}

// Inject switches a fault on; faults are checked in the order injected.
func (h *Handler) Inject(f Fault) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.faults = append(h.faults, &activeFault{Fault: f, left: f.Times})
	h.nFaults.Store(int32(len(h.faults)))
}

// ClearFaults switches every fault off.
func (h *Handler) ClearFaults() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.faults = nil
	h.nFaults.Store(0)
}

// Requests returns how many requests reached the handler in total.
func (h *Handler) Requests() int64 { return h.total.Load() }

// RequestsTo returns how many requests reached one endpoint: "snapshot",
// "firm-users", "user-offices" or "user-exists".
func (h *Handler) RequestsTo(endpoint string) int64 {
	for i, e := range endpoints {
		if e == endpoint {
			return h.counts[i].Load()
		}
	}
	return 0
}

// takeFault returns the first fault matching path, consuming one use.
func (h *Handler) takeFault(path string) *Fault {
	if h.nFaults.Load() == 0 {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, f := range h.faults {
		if f.Path != "" && !strings.HasPrefix(path, f.Path) {
			continue
		}
		out := f.Fault
		if f.Times > 0 {
			f.left--
			if f.left <= 0 {
				h.faults = append(h.faults[:i:i], h.faults[i+1:]...)
				h.nFaults.Store(int32(len(h.faults)))
			}
		}
		return &out
	}
	return nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.total.Add(1)
	// No Date header: formatting it is a measurable share of the fake's
	// cost per request, and the API's shapes do not depend on it.
	w.Header()["Date"] = nil
	if r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "only GET is supported")
		return
	}
	endpoint, arg, ok := route(r.URL.Path)
	if !ok {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "no such endpoint")
		return
	}
	h.counts[endpoint].Add(1)
	h.mu.RLock()
	header, key := h.header, h.key
	h.mu.RUnlock()

	f := h.takeFault(r.URL.Path)
	if f != nil && f.Kind == FaultLatency {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
		f = nil
	}
	if f != nil {
		switch f.Kind {
		case FaultServerError:
			writeError(w, http.StatusInternalServerError, "INTERNAL", "internal error (injected)")
			return
		case FaultTooManyRequests:
			w.Header().Set("Retry-After", strconv.Itoa(int(f.RetryAfter/time.Second)))
			writeError(w, http.StatusTooManyRequests, "RATE_LIMITED", "too many requests (injected)")
			return
		case FaultUnauthorized:
			writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "invalid API key (injected)")
			return
		case FaultOutOfHours:
			if f.RetryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(int(f.RetryAfter/time.Second)))
			}
			writeError(w, http.StatusServiceUnavailable, "OUT_OF_HOURS", "the service is available in office hours only")
			return
		}
	}
	got := r.Header.Get(header)
	if key == "" || subtle.ConstantTimeCompare([]byte(got), []byte(key)) != 1 {
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "missing or invalid API key")
		return
	}

	var body []byte
	status := http.StatusOK
	h.mu.RLock()
	switch endpoint {
	case epSnapshot:
		body = h.snap
	case epFirmUsers:
		var known bool
		if body, known = h.byFirm[arg]; !known {
			status, body = http.StatusNotFound, errorBody("NOT_FOUND", "no such firm")
		}
	case epUserOffices:
		var known bool
		if body, known = h.byLogin[arg]; !known {
			status, body = http.StatusNotFound, errorBody("NOT_FOUND", "no such user")
		}
	case epUserExists:
		email := r.URL.Query().Get("userEmail")
		login, known := h.byEmail[strings.ToLower(email)]
		switch {
		case email == "":
			status, body = http.StatusBadRequest, errorBody("BAD_REQUEST", "userEmail is required")
		case !known:
			status, body = http.StatusNotFound, errorBody("NOT_FOUND", "no such user")
		default:
			body = mustJSON(map[string]any{"user": map[string]string{"userLogin": login}})
		}
	}
	h.mu.RUnlock()

	w.Header()["Content-Type"] = contentTypeJSON
	if f != nil && status == http.StatusOK {
		switch f.Kind {
		case FaultTruncated:
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(status)
			_, _ = w.Write(body[:len(body)/2])
			return // the server closes the connection: the client sees an unexpected EOF
		case FaultMalformed:
			body = append([]byte(`{"offices":[{"firmNumber":`), bytes.Repeat([]byte("<"), 8)...)
		}
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

var contentTypeJSON = []string{"application/json"}

// Endpoint indexes into endpoints (and Handler.counts).
const (
	epSnapshot = iota
	epFirmUsers
	epUserOffices
	epUserExists
)

// route maps a path to an endpoint and its path argument (without
// splitting the path: the fake's cost per request matters to the sync
// benchmark, which runs it in the client's process).
func route(p string) (endpoint int, arg string, ok bool) {
	p = strings.Trim(p, "/")
	if p == "provider-offices/snapshot" {
		return epSnapshot, "", true
	}
	if p == "provider-users/exists" {
		return epUserExists, "", true
	}
	if rest, found := strings.CutPrefix(p, "provider-firms/"); found {
		if a, found := strings.CutSuffix(rest, "/provider-users"); found && a != "" && !strings.Contains(a, "/") {
			return epFirmUsers, a, true
		}
	}
	if rest, found := strings.CutPrefix(p, "provider-users/"); found {
		if a, found := strings.CutSuffix(rest, "/provider-offices"); found && a != "" && !strings.Contains(a, "/") {
			return epUserOffices, a, true
		}
	}
	return 0, "", false
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	b := errorBody(code, msg)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func errorBody(code, msg string) []byte {
	return mustJSON(map[string]string{"error": msg, "code": code})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("cwafake: encode: " + err.Error())
	}
	return b
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
