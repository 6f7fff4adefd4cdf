package cwasync

// The HTTP transport of the CWA client.
//
// A sync makes one request per firm and one per legacy login (about 55,000
// for 5,000 firms and 50,000 logins), so the cost per request decides the
// sync's time (issue 5: ≤ 5 s). net/http's client hands every request to two
// goroutines per connection (writeLoop, readLoop) and allocates a request,
// a response, header maps and a body reader each time: 87 µs of CPU per
// request against the in-process fake, fake included
// (BenchmarkClientUserOffices). github.com/valyala/fasthttp writes the
// request and reads the answer on the calling goroutine, into pooled
// request and response objects: 41–45 µs for the same requests. That is
// why the client uses fasthttp's HostClient (one host, the Provider Data
// API) rather than net/http.
//
// What net/http gave for free and is kept here by hand:
//   - context cancellation: fasthttp has deadlines only. Every attempt has
//     a deadline (the per-attempt timeout, or ctx's deadline if earlier),
//     and a cancelled ctx closes the client's open connections
//     (context.AfterFunc), which ends the requests in flight at once. Other
//     callers' requests on those connections fail with a transient error and
//     are retried (every request is an idempotent GET).
//   - proxies: HTTP_PROXY, HTTPS_PROXY and NO_PROXY from the environment, as
//     net/http reads them (fasthttpproxy, same package golang.org/x/net/http/httpproxy).
//   - no retries of its own: fasthttp retries idempotent requests by
//     default; MaxIdemponentCallAttempts 1 leaves every retry to getJSON's
//     backoff, which honours Retry-After and counts attempts.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpproxy"
)

// newHostClient returns the fasthttp client for base (http or https).
func newHostClient(base *url.URL, o ClientOptions, conns *connSet) (*fasthttp.HostClient, error) {
	isTLS := base.Scheme == "https"
	addr := base.Host
	if base.Port() == "" {
		if isTLS {
			addr = net.JoinHostPort(base.Hostname(), "443")
		} else {
			addr = net.JoinHostPort(base.Hostname(), "80")
		}
	}
	d := &fasthttpproxy.Dialer{Timeout: o.Timeout, ConnectTimeout: o.Timeout, DialDualStack: true}
	dial, err := d.GetDialFuncForTLS(true, isTLS)
	if err != nil {
		return nil, fmt.Errorf("cwasync: proxy settings: %w", err)
	}
	hc := &fasthttp.HostClient{
		Addr:  addr,
		Name:  "dirsyncd",
		IsTLS: isTLS,
		// MinVersion TLS 1.2, the server name from the base URL.
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, ServerName: base.Hostname()},
		Dial: func(addr string) (net.Conn, error) {
			c, err := dial(addr)
			if err != nil {
				return nil, err
			}
			return conns.add(c), nil
		},
		MaxConns: o.MaxConns,
		// A caller beyond MaxConns waits for a free connection (net/http's
		// behaviour) instead of failing with ErrNoFreeConns.
		MaxConnWaitTimeout:        o.Timeout,
		MaxIdleConnDuration:       30 * time.Second,
		MaxIdemponentCallAttempts: 1,
		MaxResponseBodySize:       int(min(o.MaxBodyBytes, int64(^uint(0)>>1))),
		// The path is sent as the callers escaped it (a login may hold a '/').
		DisablePathNormalizing: true,
		DialDualStack:          true,
	}
	return hc, nil
}

// connSet is the client's open connections, closed all at once when a
// caller's context ends.
type connSet struct {
	mu sync.Mutex
	m  map[*trackedConn]struct{}
}

type trackedConn struct {
	net.Conn
	set *connSet
}

func (t *trackedConn) Close() error {
	t.set.mu.Lock()
	delete(t.set.m, t)
	t.set.mu.Unlock()
	return t.Conn.Close()
}

func (s *connSet) add(c net.Conn) net.Conn {
	t := &trackedConn{Conn: c, set: s}
	s.mu.Lock()
	if s.m == nil {
		s.m = map[*trackedConn]struct{}{}
	}
	s.m[t] = struct{}{}
	s.mu.Unlock()
	return t
}

// closeAll closes every open connection (fasthttp sees the error and
// drops them from its pool).
func (s *connSet) closeAll() {
	s.mu.Lock()
	cs := make([]net.Conn, 0, len(s.m))
	for t := range s.m {
		cs = append(cs, t.Conn)
	}
	s.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
}

// abort ends every request in flight and empties the pool (a cancelled
// caller's context; see the file comment).
func (c *Client) abort() {
	c.hc.CloseIdleConnections()
	c.conns.closeAll()
}

// attempt sends one GET of uri and calls body with a 2xx answer's body
// (valid only during the call). retry says whether a failure is transient;
// wait is the server's Retry-After, when it gave one.
func (c *Client) attempt(ctx context.Context, uri string, body func([]byte) error) (retry bool, wait time.Duration, err error) {
	deadline := time.Now().Add(c.o.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(uri)
	req.URI().DisablePathNormalizing = true
	req.Header.SetMethod(fasthttp.MethodGet)
	req.Header.Set(c.apiKeyHeader, c.o.APIKey)
	req.Header.Set("Accept", "application/json")

	stop := context.AfterFunc(ctx, c.abort)
	err = c.hc.DoDeadline(req, resp, deadline)
	stop()
	if err != nil {
		if ctx.Err() != nil {
			return false, 0, ctx.Err()
		}
		if errors.Is(err, fasthttp.ErrBodyTooLarge) {
			return false, 0, fmt.Errorf("%w: body larger than %d bytes", ErrMalformed, c.o.MaxBodyBytes)
		}
		// Connection refused or reset, a truncated body, the per-attempt
		// timeout: transient. fasthttp's errors name neither the URL's
		// query nor any header, so never the key.
		return true, 0, fmt.Errorf("GET %s: %w", redactURI(uri), err)
	}
	status := resp.StatusCode()
	b := resp.Body()
	if status >= 200 && status < 300 {
		if err := body(b); err != nil {
			return false, 0, err
		}
		return false, 0, nil
	}
	code := errorCode(b)
	ra, hasRA := retryAfter(string(resp.Header.Peek("Retry-After")), time.Now)
	switch {
	case status == fasthttp.StatusUnauthorized || status == fasthttp.StatusForbidden:
		return false, 0, fmt.Errorf("%w (HTTP %d)", ErrUnauthorized, status)
	case status == fasthttp.StatusNotFound:
		return false, 0, ErrNotFound
	case status == fasthttp.StatusServiceUnavailable && code == "OUT_OF_HOURS":
		return false, 0, fmt.Errorf("%w: outside service hours (HTTP 503)", ErrUnavailable)
	case hasRA && ra > c.o.MaxRetryAfter:
		return false, 0, fmt.Errorf("%w: HTTP %d with Retry-After %s (more than %s)", ErrUnavailable, status, ra, c.o.MaxRetryAfter)
	case status == fasthttp.StatusTooManyRequests || status >= 500:
		return true, ra, &StatusError{Status: status, Code: code}
	}
	return false, 0, &StatusError{Status: status, Code: code}
}

// redactURI is uri without its query (a look-up by e-mail carries the
// e-mail there; the API key is never in the URI).
func redactURI(uri string) string {
	path, _, _ := strings.Cut(uri, "?")
	return path
}
