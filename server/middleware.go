package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"

	"go.uber.org/zap"

	"github.com/dirsyncd/dirsyncd/auth"
)

// HeaderRequestID carries the request id in and out.
const HeaderRequestID = "X-Request-ID"

type requestIDKey struct{}

// RequestID returns the request id of ctx ("" outside a request). Handlers
// put it in audit.Meta.RequestID.
func RequestID(ctx context.Context) string {
	s, _ := ctx.Value(requestIDKey{}).(string)
	return s
}

// validRequestID accepts a caller's id when it is short printable ASCII, so
// a hostile header cannot pollute the logs.
func validRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// withRequestID accepts X-Request-ID or generates one, stores it in the
// context and returns it in the response.
func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(HeaderRequestID)
		if !validRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set(HeaderRequestID, id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id)))
	})
}

// statusWriter remembers the status and size written.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// accessLog logs one line per request. It logs method, path, route,
// status, size, duration, request id and caller; never a header's value
// (so never Authorization) and never the query string (SCIM filters can
// hold e-mail addresses).
func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.now()
		sw := &statusWriter{ResponseWriter: w}
		rec := &routeRecord{}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), routeKey{}, rec)))
		fields := []zap.Field{
			zap.String("method", r.Method),
			zap.String("path", r.URL.Path),
			zap.String("route", rec.route()),
			zap.Int("status", sw.code()),
			zap.Int64("bytes", sw.bytes),
			zap.Duration("duration", s.now().Sub(start)),
			zap.String("request_id", RequestID(r.Context())),
			zap.String("remote_addr", r.RemoteAddr),
		}
		if rec.principal != "" {
			fields = append(fields, zap.String("principal", rec.principal))
		}
		s.log.Info("request", fields...)
	})
}

// routeRecord lets inner handlers tell the outer middleware which route
// matched and who called (the request the mux sees is a copy).
type routeRecord struct {
	pattern   string
	principal string
}

func (r *routeRecord) route() string {
	if r.pattern == "" {
		return "unmatched"
	}
	return r.pattern
}

type routeKey struct{}

func recordOf(ctx context.Context) *routeRecord {
	if r, ok := ctx.Value(routeKey{}).(*routeRecord); ok {
		return r
	}
	return &routeRecord{}
}

// instrument observes HTTP metrics by route pattern (never the raw path,
// whose ids would explode the label set).
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		route := recordOf(r.Context()).route()
		s.metrics.httpRequests.WithLabelValues(route, strconv.Itoa(sw.code())).Inc()
		s.metrics.httpDuration.WithLabelValues(route).Observe(s.now().Sub(start).Seconds())
	})
}

// recoverPanics turns a handler panic into a 500 JSON error and a log line
// with the stack; http.ErrAbortHandler is passed on.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("handler panicked", zap.Any("panic", v), zap.ByteString("stack", debug.Stack()),
				zap.String("request_id", RequestID(r.Context())))
			writeError(w, http.StatusInternalServerError, "internal", "internal server error")
		}()
		next.ServeHTTP(w, r)
	})
}

// limitBody refuses bodies over max with 413: at once when Content-Length
// says so, otherwise when the handler reads past the limit (handlers map
// *http.MaxBytesError to 413 with decodeJSON).
func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > s.maxBody {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body exceeds %d bytes", s.maxBody))
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, s.maxBody)
		}
		next.ServeHTTP(w, r)
	})
}

// route marks which pattern matched, for the access log and metrics.
func route(pattern string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		recordOf(r.Context()).pattern = pattern
		next.ServeHTTP(w, r)
	})
}

// RequireScope wraps h so it runs only for a bearer token holding scope:
// 401 without a token or with an unknown one, 429 (Retry-After) when the
// token is over its rate limit, 403 with a known token that lacks the
// scope. The principal is put in the request's context
// (auth.PrincipalFrom).
func (s *Server) RequireScope(scope string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := auth.BearerToken(r)
		if !ok {
			s.logRefusal(r, &authFailure{status: http.StatusUnauthorized, code: "unauthenticated", reason: "no bearer token"})
			w.Header().Set("WWW-Authenticate", `Bearer realm="dirsyncd"`)
			writeError(w, http.StatusUnauthorized, "unauthenticated", "a bearer token is required")
			return
		}
		c, f := s.authenticateBearer(r.Context(), tok) // static tokens, then OIDC (authn.go)
		if f != nil {
			s.logRefusal(r, f)
			f.write(w)
			return
		}
		p := c.p
		recordOf(r.Context()).principal = p.Name
		if s.rateLimited(w, r, p) {
			return
		}
		if !p.Has(scope) {
			s.logRefusal(r, &authFailure{status: http.StatusForbidden, code: "forbidden", reason: "the caller lacks scope " + scope})
			writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("the token lacks scope %q", scope))
			return
		}
		h.ServeHTTP(w, r.WithContext(withCaller(r.Context(), c)))
	})
}

// isTooLarge reports whether err comes from reading past the body limit.
func isTooLarge(err error) bool {
	var mb *http.MaxBytesError
	return errors.As(err, &mb)
}
