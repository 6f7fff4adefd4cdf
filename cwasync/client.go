package cwasync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Errors a run can fail with; the client wraps them with the operation.
var (
	// ErrUnavailable: the service refused (out of hours, or asked to retry
	// later than the client may wait). The run fails cleanly.
	ErrUnavailable = errors.New("cwa service unavailable")
	// ErrUnauthorized: the API key was refused (401/403).
	ErrUnauthorized = errors.New("cwa refused the API key")
	// ErrMalformed: the body is not the documented JSON shape.
	ErrMalformed = errors.New("cwa response malformed")
	// ErrNotFound: the service answered 404 for a firm or a login.
	ErrNotFound = errors.New("cwa: not found")
)

// StatusError is a non-2xx answer that is not one of the sentinels above.
type StatusError struct {
	Status int
	Code   string // the body's "code", when it has one
}

func (e *StatusError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("cwa: HTTP %d (%s)", e.Status, e.Code)
	}
	return fmt.Sprintf("cwa: HTTP %d", e.Status)
}

// OfficeRow is one row of GET /provider-offices/snapshot.
type OfficeRow struct {
	FirmNumber            flexString `json:"firmNumber"`
	FirmName              string     `json:"firmName"`
	FirmType              string     `json:"firmType"`
	ParentFirmNumber      flexString `json:"parentFirmNumber"`
	OfficeAccountNumber   string     `json:"officeAccountNumber"`
	OfficeAddressLine1    string     `json:"officeAddressLine1"`
	OfficeAddressLine2    string     `json:"officeAddressLine2"`
	OfficeAddressLine3    string     `json:"officeAddressLine3"`
	OfficeAddressCity     string     `json:"officeAddressCity"`
	OfficeAddressPostcode string     `json:"officeAddressPostcode"`
}

// ProviderUser is one entry of GET /provider-firms/{firmNumber}/provider-users,
// whose shape dirsyncd fixes as {"users":[{userLogin, firstName, lastName, email}]}.
type ProviderUser struct {
	UserLogin string `json:"userLogin"`
	FirstName string `json:"firstName"`
	LastName  string `json:"lastName"`
	Email     string `json:"email"`
}

// flexString accepts a JSON string or number (firm numbers are numeric in
// some CWA extracts) and null.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	switch {
	case string(b) == "null":
		*f = ""
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(strings.TrimSpace(s))
	default:
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("want a string or number, got %s", b)
		}
		*f = flexString(n.String())
	}
	return nil
}

// ClientOptions configure a Client. Zero values take the defaults shown.
type ClientOptions struct {
	BaseURL      string
	APIKey       string // sent in APIKeyHeader; never logged
	APIKeyHeader string // default X-Authorization
	Timeout      time.Duration
	MaxAttempts  int           // default 4
	Backoff      time.Duration // first retry delay, default 500ms
	MaxBackoff   time.Duration // default 30s
	// MaxRetryAfter: a Retry-After longer than this fails the request with
	// ErrUnavailable instead of waiting (default 2m).
	MaxRetryAfter time.Duration
	MaxBodyBytes  int64 // default 256 MiB
	MaxConns      int   // idle connections kept per host, default 16
	HTTPClient    *http.Client
	Log           *zap.Logger

	// Sleep waits d or until ctx ends (tests inject a recorder).
	Sleep func(ctx context.Context, d time.Duration) error
	// Jitter returns a number in [0,1) (tests inject a constant).
	Jitter func() float64
}

// Client talks to the Provider Data API. It is safe for concurrent use.
type Client struct {
	base   *url.URL
	o      ClientOptions
	hc     *http.Client
	log    *zap.Logger
	sleep  func(context.Context, time.Duration) error
	jitter func() float64
	// apiKeyHeader is o.APIKeyHeader in canonical form (requests set the
	// header map directly).
	apiKeyHeader string
}

// NewClient returns a client for o.BaseURL.
func NewClient(o ClientOptions) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(o.BaseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("cwasync: base URL %q is not an absolute http(s) URL", o.BaseURL)
	}
	if o.APIKeyHeader == "" {
		o.APIKeyHeader = "X-Authorization"
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 4
	}
	if o.Backoff <= 0 {
		o.Backoff = 500 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.MaxRetryAfter <= 0 {
		o.MaxRetryAfter = 2 * time.Minute
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 256 << 20
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 16
	}
	c := &Client{base: u, o: o, hc: o.HTTPClient, log: o.Log, sleep: o.Sleep, jitter: o.Jitter,
		apiKeyHeader: http.CanonicalHeaderKey(o.APIKeyHeader)}
	if c.hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = o.MaxConns
		tr.MaxIdleConns = o.MaxConns
		c.hc = &http.Client{Transport: tr}
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	if c.sleep == nil {
		c.sleep = sleepCtx
	}
	if c.jitter == nil {
		c.jitter = rand.Float64
	}
	return c, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Snapshot returns every row of GET /provider-offices/snapshot.
func (c *Client) Snapshot(ctx context.Context) ([]OfficeRow, error) {
	var v struct {
		Offices *[]OfficeRow `json:"offices"`
	}
	if err := c.getJSON(ctx, "/provider-offices/snapshot", nil, &v); err != nil {
		return nil, fmt.Errorf("cwasync: get office snapshot: %w", err)
	}
	if v.Offices == nil {
		return nil, fmt.Errorf("cwasync: get office snapshot: %w: no \"offices\" array", ErrMalformed)
	}
	return *v.Offices, nil
}

// FirmUsers returns the legacy logins of a firm.
func (c *Client) FirmUsers(ctx context.Context, firmNumber string) ([]ProviderUser, error) {
	var v firmUsersBody
	if err := c.getJSON(ctx, "/provider-firms/"+url.PathEscape(firmNumber)+"/provider-users", nil, &v); err != nil {
		return nil, fmt.Errorf("cwasync: get users of firm %q: %w", firmNumber, err)
	}
	if v.Users == nil {
		return nil, fmt.Errorf("cwasync: get users of firm %q: %w: no \"users\" array", firmNumber, ErrMalformed)
	}
	return *v.Users, nil
}

// UserOffices returns the office codes a legacy login has access to, as
// CWA returns them (not yet validated).
func (c *Client) UserOffices(ctx context.Context, login string) ([]string, error) {
	var v officeCodesBody
	if err := c.getJSON(ctx, "/provider-users/"+url.PathEscape(login)+"/provider-offices", nil, &v); err != nil {
		return nil, fmt.Errorf("cwasync: get offices of login %q: %w", login, err)
	}
	if v.OfficeCodes == nil {
		return nil, fmt.Errorf("cwasync: get offices of login %q: %w: no \"officeCodes\" array", login, ErrMalformed)
	}
	out := make([]string, 0, len(*v.OfficeCodes))
	for _, oc := range *v.OfficeCodes {
		out = append(out, oc.FirmOfficeCode)
	}
	return out, nil
}

// officeCodesBody is the body of GET /provider-users/{login}/provider-offices.
type officeCodesBody struct {
	OfficeCodes *[]officeCode `json:"officeCodes"`
}

type officeCode struct {
	FirmOfficeCode string `json:"firmOfficeCode"`
}

// decodeFast parses the body's usual form, {"officeCodes":[{"firmOfficeCode":
// "0Q731M"}, ...]} with plain ASCII strings and any JSON whitespace, without
// reflection (a sync decodes one per login). Anything else (other or
// repeated keys, escapes, nulls, bad JSON) returns false and is left to
// encoding/json, so the result and the errors are encoding/json's.
func (v *officeCodesBody) decodeFast(b []byte) bool {
	p := jsonScan{b: b}
	if !p.lit('{') || p.str() != "officeCodes" || !p.lit(':') || !p.lit('[') {
		return false
	}
	codes := []officeCode{}
	if !p.lit(']') {
		for {
			if !p.lit('{') || p.str() != "firmOfficeCode" || !p.lit(':') {
				return false
			}
			code, ok := p.strOK()
			if !ok || !p.lit('}') {
				return false
			}
			codes = append(codes, officeCode{FirmOfficeCode: code})
			if p.lit(']') {
				break
			}
			if !p.lit(',') {
				return false
			}
		}
	}
	if !p.lit('}') || !p.end() {
		return false
	}
	v.OfficeCodes = &codes
	return true
}

// firmUsersBody is the body of GET /provider-firms/{firmNumber}/provider-users.
type firmUsersBody struct {
	Users *[]ProviderUser `json:"users"`
}

// decodeFast parses the body's usual form, {"users":[{"userLogin":"JSMITH",
// "firstName":"John","lastName":"Smith","email":"j@x.example"}, ...]} with
// the four keys spelled exactly, each at most once, in any order, values
// plain ASCII strings (see officeCodesBody.decodeFast); anything else
// returns false and is left to encoding/json.
func (v *firmUsersBody) decodeFast(b []byte) bool {
	p := jsonScan{b: b}
	if !p.lit('{') || p.str() != "users" || !p.lit(':') || !p.lit('[') {
		return false
	}
	users := []ProviderUser{}
	if !p.lit(']') {
		for {
			if !p.lit('{') {
				return false
			}
			var u ProviderUser
			var seen [4]bool
			if !p.lit('}') {
				for {
					key, ok := p.strOK()
					if !ok || !p.lit(':') {
						return false
					}
					val, ok := p.strOK()
					if !ok {
						return false
					}
					var i int
					var dst *string
					switch key {
					case "userLogin":
						i, dst = 0, &u.UserLogin
					case "firstName":
						i, dst = 1, &u.FirstName
					case "lastName":
						i, dst = 2, &u.LastName
					case "email":
						i, dst = 3, &u.Email
					default:
						return false
					}
					if seen[i] {
						return false
					}
					seen[i], *dst = true, val
					if p.lit('}') {
						break
					}
					if !p.lit(',') {
						return false
					}
				}
			}
			users = append(users, u)
			if p.lit(']') {
				break
			}
			if !p.lit(',') {
				return false
			}
		}
	}
	if !p.lit('}') || !p.end() {
		return false
	}
	v.Users = &users
	return true
}

// jsonScan reads a strict subset of JSON: punctuation and strings of
// printable ASCII without escapes, with JSON whitespace between tokens.
type jsonScan struct {
	b []byte
	i int
}

func (p *jsonScan) ws() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\t' || p.b[p.i] == '\n' || p.b[p.i] == '\r') {
		p.i++
	}
}

func (p *jsonScan) lit(c byte) bool {
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *jsonScan) str() string { s, _ := p.strOK(); return s }

func (p *jsonScan) strOK() (string, bool) {
	if !p.lit('"') {
		return "", false
	}
	start := p.i
	for ; p.i < len(p.b); p.i++ {
		switch c := p.b[p.i]; {
		case c == '"':
			s := string(p.b[start:p.i])
			p.i++
			return s, true
		case c == '\\' || c < 0x20 || c > 0x7e:
			return "", false
		}
	}
	return "", false
}

func (p *jsonScan) end() bool { p.ws(); return p.i == len(p.b) }

// LoginByEmail looks a legacy login up by e-mail
// (GET /provider-users/exists?userEmail=); ok is false when there is none.
func (c *Client) LoginByEmail(ctx context.Context, email string) (login string, ok bool, err error) {
	var v struct {
		User *struct {
			UserLogin string `json:"userLogin"`
		} `json:"user"`
	}
	err = c.getJSON(ctx, "/provider-users/exists", url.Values{"userEmail": {email}}, &v)
	if errors.Is(err, ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("cwasync: look up login by e-mail: %w", err)
	}
	if v.User == nil || v.User.UserLogin == "" {
		return "", false, fmt.Errorf("cwasync: look up login by e-mail: %w: no \"user\" object", ErrMalformed)
	}
	return v.User.UserLogin, true, nil
}

// bodyPool recycles response buffers: a sync makes one request per firm
// and per login, and decoding copies what it keeps out of the buffer.
var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBody: larger buffers (the snapshot's) are left to the GC.
const maxPooledBody = 64 << 10

// getJSON GETs path and decodes the body into v, retrying transient
// failures with exponential backoff and jitter.
func (c *Client) getJSON(ctx context.Context, path string, q url.Values, v any) error {
	// path is escaped (the callers escape its segments): keep that form on
	// the wire (RawPath) and the decoded one in Path.
	u := *c.base
	dec, err := url.PathUnescape(path)
	if err != nil {
		return fmt.Errorf("bad request path %q: %w", path, err)
	}
	u.RawPath = c.base.EscapedPath() + path
	u.Path += dec
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	for attempt := 1; ; attempt++ {
		buf := bodyPool.Get().(*bytes.Buffer)
		buf.Reset()
		retry, wait, err := c.do(ctx, &u, buf)
		if err == nil {
			err = decodeStrict(buf.Bytes(), v)
			if buf.Cap() <= maxPooledBody {
				bodyPool.Put(buf)
			}
			if err != nil {
				return fmt.Errorf("%w: %v", ErrMalformed, err)
			}
			return nil
		}
		if buf.Cap() <= maxPooledBody {
			bodyPool.Put(buf)
		}
		if !retry || attempt >= c.o.MaxAttempts || ctx.Err() != nil {
			if retry && ctx.Err() == nil {
				return fmt.Errorf("after %d attempts: %w", attempt, err)
			}
			return err
		}
		if wait <= 0 {
			wait = c.backoff(attempt)
		}
		c.log.Debug("cwa request failed; retrying", zap.String("path", path), zap.Int("attempt", attempt),
			zap.Duration("wait", wait), zap.Error(err))
		if err := c.sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// backoff returns the delay before retry number attempt (1-based):
// Backoff·2^(attempt-1), capped at MaxBackoff, scaled by a jitter in
// [0.5, 1) so that concurrent clients spread out.
func (c *Client) backoff(attempt int) time.Duration {
	d := float64(c.o.Backoff) * math.Pow(2, float64(attempt-1))
	if d > float64(c.o.MaxBackoff) {
		d = float64(c.o.MaxBackoff)
	}
	return time.Duration(d * (0.5 + c.jitter()/2))
}

// do performs one attempt, reading a 2xx body into buf. retry says whether
// the failure is transient; wait is the server's Retry-After, when it gave
// one.
func (c *Client) do(ctx context.Context, u *url.URL, buf *bytes.Buffer) (retry bool, wait time.Duration, err error) {
	actx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	// The request is built directly (not from a URL string, which would be
	// parsed again on every one of a sync's ~55,000 requests).
	hdr := make(http.Header, 2)
	hdr[c.apiKeyHeader] = []string{c.o.APIKey}
	hdr["Accept"] = acceptJSON
	req := (&http.Request{Method: http.MethodGet, URL: u, Host: u.Host, Header: hdr,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}).WithContext(actx)
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return false, 0, ctx.Err()
		}
		// Connection refused/reset, per-attempt timeout: transient. The
		// url.Error names the URL, never the header carrying the key.
		return true, 0, err
	}
	defer resp.Body.Close()
	if n := resp.ContentLength; n > 0 && n <= c.o.MaxBodyBytes {
		buf.Grow(int(n) + 1) // one allocation for the large snapshot body
	}
	_, err = buf.ReadFrom(io.LimitReader(resp.Body, c.o.MaxBodyBytes+1))
	body := buf.Bytes()
	if err != nil {
		if ctx.Err() != nil {
			return false, 0, ctx.Err()
		}
		return true, 0, fmt.Errorf("read body (truncated?): %w", err)
	}
	if int64(len(body)) > c.o.MaxBodyBytes {
		return false, 0, fmt.Errorf("%w: body larger than %d bytes", ErrMalformed, c.o.MaxBodyBytes)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return false, 0, nil
	}
	code := errorCode(body)
	ra, hasRA := retryAfter(resp.Header.Get("Retry-After"), time.Now)
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return false, 0, fmt.Errorf("%w (HTTP %d)", ErrUnauthorized, resp.StatusCode)
	case resp.StatusCode == http.StatusNotFound:
		return false, 0, ErrNotFound
	case resp.StatusCode == http.StatusServiceUnavailable && code == "OUT_OF_HOURS":
		return false, 0, fmt.Errorf("%w: outside service hours (HTTP 503)", ErrUnavailable)
	case hasRA && ra > c.o.MaxRetryAfter:
		return false, 0, fmt.Errorf("%w: HTTP %d with Retry-After %s (more than %s)", ErrUnavailable, resp.StatusCode, ra, c.o.MaxRetryAfter)
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return true, ra, &StatusError{Status: resp.StatusCode, Code: code}
	}
	return false, 0, &StatusError{Status: resp.StatusCode, Code: code}
}

var acceptJSON = []string{"application/json"}

// retryAfter parses a Retry-After header: delay-seconds or an HTTP date.
func retryAfter(h string, now func() time.Time) (time.Duration, bool) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(h); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(h); err == nil {
		d := t.Sub(now())
		if d < 0 {
			d = 0
		}
		return d, true
	}
	return 0, false
}

func errorCode(body []byte) string {
	var e struct {
		Code string `json:"code"`
	}
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	return e.Code
}

// decodeStrict decodes exactly one JSON value (json.Unmarshal refuses
// trailing data; it decodes from b without copying it first), through the
// value's fast path when it has one and the body fits it.
func decodeStrict(b []byte, v any) error {
	if f, ok := v.(interface{ decodeFast([]byte) bool }); ok && f.decodeFast(b) {
		return nil
	}
	return json.Unmarshal(b, v)
}
