package scim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/auth"
)

const contentType = "application/scim+json"

// Defaults of Options.
const (
	DefaultMaxBodyBytes = 1 << 20
	DefaultCount        = 100
	DefaultMaxResults   = 1000
)

// Options configure a Handler.
type Options struct {
	// BaseURL is the absolute URL of the SCIM root, e.g.
	// "https://dirsyncd.example/scim/v2" (server.publicURL + "/scim/v2").
	// Empty: derived from each request's Host (http, or https behind TLS).
	BaseURL      string
	MaxBodyBytes int64 // default 1 MiB; larger bodies get 413
	DefaultCount int   // page size when count is absent (default 100)
	MaxResults   int   // largest page (default 1000)
	Enqueuer     Enqueuer
	Logger       *zap.Logger
	Now          func() time.Time
}

// Handler serves /scim/v2. Mount it with the prefix stripped
// (http.StripPrefix("/scim/v2", h)).
type Handler struct {
	b        Backend
	verifier *auth.Verifier
	opts     Options
	enq      Enqueuer
	log      *zap.Logger
	now      func() time.Time
	disco    http.Handler

	mu       sync.Mutex
	limiters map[string]*rate.Limiter
}

// New builds the SCIM handler on backend b; v authenticates bearer tokens.
func New(b Backend, v *auth.Verifier, opts Options) (*Handler, error) {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxResults <= 0 {
		opts.MaxResults = DefaultMaxResults
	}
	if opts.DefaultCount <= 0 {
		opts.DefaultCount = DefaultCount
	}
	if opts.DefaultCount > opts.MaxResults {
		opts.DefaultCount = opts.MaxResults
	}
	opts.BaseURL = strings.TrimRight(opts.BaseURL, "/")
	h := &Handler{b: b, verifier: v, opts: opts, enq: opts.Enqueuer, log: opts.Logger, now: opts.Now, limiters: map[string]*rate.Limiter{}}
	if h.enq == nil {
		h.enq = NopEnqueuer{}
	}
	if h.log == nil {
		h.log = zap.NewNop()
	}
	h.log = h.log.Named("scim")
	if h.now == nil {
		h.now = time.Now
	}
	d, err := newDiscovery(opts)
	if err != nil {
		return nil, err
	}
	h.disco = d
	return h, nil
}

type ctxKey int

const (
	reqIDKey ctxKey = iota
	baseKey
	sourceKey
)

// clientSource is the source of what the calling SCIM client provisions:
// "scim:<token name>", whatever other scopes the token has (the audit
// actor of a token that also has admin scopes is "admin:<name>", but the
// groups and user links it creates are still SCIM resources).
func clientSource(ctx context.Context) string {
	s, _ := ctx.Value(sourceKey).(string)
	return s
}

func requestID(r *http.Request) string {
	s, _ := r.Context().Value(reqIDKey).(string)
	return s
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ServeHTTP authenticates, rate-limits, bounds the body and routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rid := r.Header.Get("X-Request-Id")
	if rid == "" || len(rid) > 128 || !printableASCII(rid) { // it is stored in the audit log
		rid = newRequestID()
	}
	w.Header().Set("X-Request-Id", rid)
	ctx := context.WithValue(r.Context(), reqIDKey, rid)

	tok, ok := auth.BearerToken(r)
	var p auth.Principal
	if ok && h.verifier != nil {
		p, ok = h.verifier.Verify(tok)
	}
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="scim"`)
		writeErrorBody(w, &Error{Status: http.StatusUnauthorized, Detail: "a valid bearer token is required"})
		return
	}
	if !p.Has(auth.ScopeSCIM) {
		writeErrorBody(w, &Error{Status: http.StatusForbidden, Detail: "the token lacks the scim scope"})
		return
	}
	if wait, allowed := h.allow(p); !allowed {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		// No scimType: RFC 7644 §3.12 defines "tooMany" for 400 only (a
		// query that would return too many results), not for 429.
		writeErrorBody(w, &Error{Status: http.StatusTooManyRequests, Detail: "rate limit exceeded"})
		return
	}
	if r.ContentLength > h.opts.MaxBodyBytes {
		writeErrorBody(w, &Error{Status: http.StatusRequestEntityTooLarge, Detail: fmt.Sprintf("body larger than %d bytes", h.opts.MaxBodyBytes)})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes)
	base := h.opts.BaseURL
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host + "/scim/v2"
	}
	ctx = context.WithValue(ctx, baseKey, base)
	ctx = context.WithValue(ctx, sourceKey, scimSourcePrefix+p.Name)
	ctx = auth.WithPrincipal(ctx, p)
	r = r.WithContext(ctx)
	h.route(w, r)
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// allow applies the client's token bucket; it returns how long to wait
// when the request is refused.
func (h *Handler) allow(p auth.Principal) (time.Duration, bool) {
	if p.RateLimit <= 0 {
		return 0, true
	}
	h.mu.Lock()
	l, ok := h.limiters[p.Name]
	if !ok {
		burst := p.Burst
		if burst < 1 {
			burst = int(math.Max(1, 2*p.RateLimit))
		}
		l = rate.NewLimiter(rate.Limit(p.RateLimit), burst)
		h.limiters[p.Name] = l
	}
	h.mu.Unlock()
	now := h.now()
	if l.AllowN(now, 1) {
		return 0, true
	}
	res := l.ReserveN(now, 1)
	d := res.DelayFrom(now)
	res.CancelAt(now)
	if d < time.Second {
		d = time.Second
	}
	return d, false
}

func (h *Handler) route(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case path == "/ServiceProviderConfig" || path == "/ResourceTypes" || strings.HasPrefix(path, "/ResourceTypes/") ||
		path == "/Schemas" || strings.HasPrefix(path, "/Schemas/"):
		if r.Method != http.MethodGet {
			writeErrorBody(w, &Error{Status: http.StatusMethodNotAllowed, Detail: "method not allowed"})
			return
		}
		h.disco.ServeHTTP(w, r)
		return
	}
	for _, rt := range []struct {
		def *resourceDef
		res resourceOps
	}{{userDef, userOps{h}}, {groupDef, groupOps{h}}} {
		ep := rt.def.Endpoint
		switch {
		case path == ep:
			switch r.Method {
			case http.MethodGet:
				h.list(w, r, rt.def, rt.res, r.URL.Query().Get)
			case http.MethodPost:
				h.create(w, r, rt.def, rt.res)
			default:
				writeErrorBody(w, &Error{Status: http.StatusMethodNotAllowed, Detail: "method not allowed"})
			}
			return
		case path == ep+"/.search":
			if r.Method != http.MethodPost {
				writeErrorBody(w, &Error{Status: http.StatusMethodNotAllowed, Detail: "method not allowed"})
				return
			}
			h.search(w, r, rt.def, rt.res)
			return
		case strings.HasPrefix(path, ep+"/"):
			id := strings.TrimPrefix(path, ep+"/")
			if id == "" || strings.Contains(id, "/") {
				break
			}
			if !utf8.ValidString(id) || strings.IndexByte(id, 0) >= 0 {
				// no resource has such an id (PostgreSQL cannot even compare it)
				writeErrorBody(w, notFound(rt.def.Name, id))
				return
			}
			switch r.Method {
			case http.MethodGet:
				h.get(w, r, rt.def, rt.res, id)
			case http.MethodPut:
				h.replace(w, r, rt.def, rt.res, id)
			case http.MethodPatch:
				h.patch(w, r, rt.def, rt.res, id)
			case http.MethodDelete:
				h.delete(w, r, rt.res, id)
			default:
				writeErrorBody(w, &Error{Status: http.StatusMethodNotAllowed, Detail: "method not allowed"})
			}
			return
		}
	}
	writeErrorBody(w, &Error{Status: http.StatusNotFound, Detail: "no such endpoint"})
}

// resourceOps is one resource type's store side.
type resourceOps interface {
	// get reads one visible resource and renders it (404 if hidden).
	get(ctx context.Context, id string, p projection) (map[string]any, int64, error)
	list(ctx context.Context, q listQuery, p projection) ([]map[string]any, int64, error)
	create(ctx context.Context, m audit.Meta, st map[string]any) (map[string]any, int64, error)
	replace(ctx context.Context, m audit.Meta, id string, st map[string]any, ifMatch int64) (map[string]any, int64, error)
	// patch returns nil when the response is 204.
	patch(ctx context.Context, m audit.Meta, id string, ops []patchOp, ifMatch int64) (map[string]any, int64, error)
	delete(ctx context.Context, m audit.Meta, id string, ifMatch int64) error
}

func (h *Handler) meta(r *http.Request) audit.Meta {
	p, _ := auth.PrincipalFrom(r.Context())
	return audit.Meta{Actor: p.Actor(), RequestID: requestID(r)}
}

func baseURL(ctx context.Context) string {
	s, _ := ctx.Value(baseKey).(string)
	return s
}

func (h *Handler) readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &Error{Status: http.StatusRequestEntityTooLarge, Detail: fmt.Sprintf("body larger than %d bytes", mbe.Limit)}
		}
		return nil, badRequest(TypeInvalidSyntax, "reading the body failed")
	}
	return b, nil
}

func (h *Handler) readResource(r *http.Request, def *resourceDef) (map[string]any, error) {
	b, err := h.readBody(r)
	if err != nil {
		return nil, err
	}
	var raw map[string]any
	if err := decodeBody(b, &raw); err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, badRequest(TypeInvalidSyntax, "body must be a JSON object")
	}
	if _, ok := raw["schemas"]; !ok {
		found := false
		for k := range raw {
			if strings.EqualFold(k, "schemas") {
				found = true
			}
		}
		if !found {
			return nil, badRequest(TypeInvalidSyntax, "schemas is required")
		}
	}
	return normalizeResource(def, raw)
}

// ifMatch returns the version an If-Match header requires (0 = none).
func ifMatch(r *http.Request) (int64, error) {
	v := strings.TrimSpace(r.Header.Get("If-Match"))
	if v == "" || v == "*" {
		return 0, nil
	}
	n, ok := parseETag(v)
	if !ok {
		return -1, &Error{Status: http.StatusPreconditionFailed, Detail: "If-Match does not name a version of this resource"}
	}
	return n, nil
}

func parseETag(v string) (int64, bool) {
	v = strings.TrimPrefix(strings.TrimSpace(v), "W/")
	v = strings.Trim(v, `"`)
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil && n > 0
}

func (h *Handler) writeJSON(w http.ResponseWriter, status int, v any, version int64) {
	b, err := json.Marshal(v)
	if err != nil {
		writeErrorBody(w, &Error{Status: 500, Detail: "internal error"})
		return
	}
	w.Header().Set("Content-Type", contentType)
	if version > 0 {
		w.Header().Set("ETag", etag(version))
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request, def *resourceDef, ops resourceOps, id string) {
	q := r.URL.Query()
	p, err := parseProjection(def, q.Get("attributes"), q.Get("excludedAttributes"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	res, ver, err := ops.get(r.Context(), id, p)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		for _, t := range strings.Split(inm, ",") {
			if n, ok := parseETag(t); (ok && n == ver) || strings.TrimSpace(t) == "*" {
				w.Header().Set("ETag", etag(ver))
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
	}
	h.writeJSON(w, http.StatusOK, res, ver)
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request, def *resourceDef, ops resourceOps) {
	st, err := h.readResource(r, def)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	res, ver, err := ops.create(r.Context(), h.meta(r), st)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if m, ok := res["meta"].(map[string]any); ok {
		w.Header().Set("Location", m["location"].(string))
	}
	h.writeJSON(w, http.StatusCreated, res, ver)
}

func (h *Handler) replace(w http.ResponseWriter, r *http.Request, def *resourceDef, ops resourceOps, id string) {
	want, err := ifMatch(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	st, err := h.readResource(r, def)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	res, ver, err := ops.replace(r.Context(), h.meta(r), id, st, want)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	h.writeJSON(w, http.StatusOK, res, ver)
}

func (h *Handler) patch(w http.ResponseWriter, r *http.Request, def *resourceDef, ops resourceOps, id string) {
	want, err := ifMatch(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	b, err := h.readBody(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	pops, err := parsePatch(b)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	res, ver, err := ops.patch(r.Context(), h.meta(r), id, pops, want)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if res == nil {
		if ver > 0 {
			w.Header().Set("ETag", etag(ver))
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	h.writeJSON(w, http.StatusOK, res, ver)
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request, ops resourceOps, id string) {
	want, err := ifMatch(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := ops.delete(r.Context(), h.meta(r), id, want); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
