package cwasync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
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
	MaxConns      int   // connections to the API at most, default 16
	Log           *zap.Logger

	// Sleep waits d or until ctx ends (tests inject a recorder).
	Sleep func(ctx context.Context, d time.Duration) error
	// Jitter returns a number in [0,1) (tests inject a constant).
	Jitter func() float64
}

// Client talks to the Provider Data API. It is safe for concurrent use.
type Client struct {
	base *url.URL
	o    ClientOptions
	// baseURI is base without a trailing slash, request paths appended.
	baseURI string
	hc      *fasthttp.HostClient
	conns   connSet
	log     *zap.Logger
	sleep   func(context.Context, time.Duration) error
	jitter  func() float64
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
	c := &Client{base: u, baseURI: u.String(), o: o, log: o.Log, sleep: o.Sleep, jitter: o.Jitter,
		apiKeyHeader: http.CanonicalHeaderKey(o.APIKeyHeader)}
	if c.hc, err = newHostClient(u, o, &c.conns); err != nil {
		return nil, err
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
	codes := []officeCode{}
	if !p.list("officeCodes", func() bool {
		if !p.lit('{') || p.str() != "firmOfficeCode" || !p.lit(':') {
			return false
		}
		code, ok := p.strOK()
		codes = append(codes, officeCode{FirmOfficeCode: code})
		return ok && p.lit('}')
	}) {
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
	users := []ProviderUser{}
	if !p.list("users", func() bool {
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
		return true
	}) {
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

// list reads a whole body {"key":[e, e, ...]}, item reading each element;
// false when anything differs.
func (p *jsonScan) list(key string, item func() bool) bool {
	if !p.lit('{') || p.str() != key || !p.lit(':') || !p.lit('[') {
		return false
	}
	if !p.lit(']') {
		for {
			if !item() {
				return false
			}
			if p.lit(']') {
				break
			}
			if !p.lit(',') {
				return false
			}
		}
	}
	return p.lit('}') && p.end()
}

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

// getJSON GETs path and decodes the body into v, retrying transient
// failures with exponential backoff and jitter.
func (c *Client) getJSON(ctx context.Context, path string, q url.Values, v any) error {
	// path is escaped (the callers escape its segments) and sent as is.
	uri := c.baseURI + path
	if len(q) > 0 {
		uri += "?" + q.Encode()
	}
	decode := func(b []byte) error {
		if err := decodeStrict(b, v); err != nil {
			return fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		return nil
	}
	for attempt := 1; ; attempt++ {
		retry, wait, err := c.attempt(ctx, uri, decode)
		if err == nil {
			return nil
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
