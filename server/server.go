package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/dirsyncd/dirsyncd/auth"
	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// Store is what the server's own routes read.
type Store interface {
	Ping(ctx context.Context) error
	GetRun(ctx context.Context, id string) (directory.Run, error)
	ListRuns(ctx context.Context, q store.RunQuery) ([]directory.Run, error)
	ListRunItems(ctx context.Context, q store.RunItemQuery) ([]directory.RunItem, error)
}

// Trigger starts a job by hand (the scheduler implements it).
type Trigger interface {
	Trigger(ctx context.Context, job string) (runID string, err error)
}

// Verifier checks bearer tokens (auth.Verifier implements it).
type Verifier interface {
	Verify(bearer string) (auth.Principal, bool)
}

// Options configure a Server. Store and Verifier are required.
type Options struct {
	Config   config.ServerConfig
	Store    Store
	Verifier Verifier
	Trigger  Trigger  // nil: POST /api/v1/runs answers 503
	Metrics  *Metrics // nil: a fresh one
	Logger   *zap.Logger
	Now      func() time.Time
	// Ready, when set, receives the listening address once (tests, dev banner).
	Ready func(addr net.Addr)
	// Admin, when set, mounts the admin API and the pages (admin.go).
	Admin *AdminOptions
}

// Server is the HTTP server.
type Server struct {
	cfg      config.ServerConfig
	mux      *http.ServeMux
	handler  http.Handler
	log      *zap.Logger
	store    Store
	verifier Verifier
	trigger  Trigger
	metrics  *Metrics
	now      func() time.Time
	maxBody  int64
	ready    func(net.Addr)
	limiter  *limiter
	adm      *adminState // nil without Options.Admin
}

// New builds the server and its routes.
func New(o Options) (*Server, error) {
	if o.Store == nil || o.Verifier == nil {
		return nil, errors.New("server: store and verifier are required")
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{
		cfg: o.Config, mux: http.NewServeMux(), log: o.Logger, store: o.Store, verifier: o.Verifier,
		trigger: o.Trigger, metrics: o.Metrics, now: o.Now, maxBody: o.Config.MaxBodyBytes, ready: o.Ready,
	}
	s.limiter = &limiter{now: o.Now, buckets: map[string]*bucket{}}
	if s.maxBody <= 0 {
		s.maxBody = config.DefaultMaxBodyBytes
	}
	s.Handle("GET /healthz", "", http.HandlerFunc(s.healthz))
	s.Handle("GET /readyz", "", http.HandlerFunc(s.readyz))
	s.Handle("GET /metrics", auth.ScopeAdminRead, promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{}))
	s.Handle("GET /api/v1/runs", auth.ScopeAdminRead, http.HandlerFunc(s.listRuns))
	s.Handle("GET /api/v1/runs/{id}", auth.ScopeAdminRead, http.HandlerFunc(s.getRun))
	s.Handle("POST /api/v1/runs", auth.ScopeAdminWrite, http.HandlerFunc(s.postRun))
	if o.Admin != nil {
		if err := s.setupAdmin(o.Admin); err != nil {
			return nil, err
		}
	}
	// Outermost first: request id, access log, panic recovery, metrics,
	// body limit, then the mux (whose routes check scopes).
	var h http.Handler = http.HandlerFunc(s.serveMux)
	h = s.limitBody(h)
	h = s.instrument(h)
	h = s.recoverPanics(h)
	h = s.accessLog(h)
	h = withRequestID(h)
	s.handler = h
	return s, nil
}

// serveMux dispatches to the mux, answering its own 404 and 405 (with
// Allow) as JSON errors.
func (s *Server) serveMux(w http.ResponseWriter, r *http.Request) {
	h, pattern := s.mux.Handler(r)
	if pattern == "" {
		cw := &codeOnlyWriter{header: w.Header()}
		h.ServeHTTP(cw, r)
		switch cw.code {
		case http.StatusNotFound:
			writeError(w, http.StatusNotFound, "not_found", "no such route")
			return
		case http.StatusMethodNotAllowed:
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed on this route")
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// codeOnlyWriter records the status a handler sets and drops its body.
type codeOnlyWriter struct {
	header http.Header
	code   int
}

func (c *codeOnlyWriter) Header() http.Header { return c.header }
func (c *codeOnlyWriter) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
}
func (c *codeOnlyWriter) Write(b []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	return len(b), nil
}

// Handle mounts h at pattern (net/http ServeMux syntax, e.g.
// "GET /api/v1/users/{id}" or "/scim/v2/"). scope is the token scope the
// route requires (auth.Scope*); "" leaves the route public. Every route
// gets the server's middleware. Call it before Run.
func (s *Server) Handle(pattern, scope string, h http.Handler) {
	if scope != "" {
		h = s.RequireScope(scope, h)
	}
	s.mux.Handle(pattern, route(pattern, h))
}

// Handler is the whole server (middleware and routes), for httptest.
func (s *Server) Handler() http.Handler { return s.handler }

// Metrics returns the server's metrics (the scheduler observes runs in it).
func (s *Server) Metrics() *Metrics { return s.metrics }

// Run listens on the configured address and serves until ctx ends, then
// shuts down gracefully within the configured shutdown timeout.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("server: listen %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          zap.NewStdLog(s.log.Named("http")),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	s.log.Info("listening", zap.String("addr", ln.Addr().String()))
	if s.ready != nil {
		s.ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("server: serve: %w", err)
	case <-ctx.Done():
	}
	timeout := s.cfg.ShutdownTimeout
	if timeout <= 0 {
		timeout = config.DefaultShutdownTimeout
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		_ = hs.Close()
		return fmt.Errorf("server: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("server: serve: %w", err)
	}
	return nil
}

// ErrorBody is the JSON error every route returns.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// WriteError writes a JSON error with status (for mounted handlers too).
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	writeError(w, status, code, msg)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var b ErrorBody
	b.Error.Code, b.Error.Message = code, msg
	writeJSON(w, status, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// API answers carry personal data (users, run items with before and
	// after, audit events): no browser or proxy may keep them.
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
