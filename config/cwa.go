package config

import (
	"math"
	"net/url"
	"strings"
	"time"
)

// Defaults of the `cwa` section.
const (
	DefaultCWAAPIKeyHeader  = "X-Authorization"
	DefaultCWATimeout       = 30 * time.Second
	DefaultCWARunTimeout    = 15 * time.Minute
	DefaultCWAMaxAttempts   = 4
	DefaultCWABackoff       = 500 * time.Millisecond
	DefaultCWAMaxBackoff    = 30 * time.Second
	DefaultCWAMaxRetryAfter = 2 * time.Minute
	// DefaultCWAConcurrency: requests in flight, over as many keep-alive
	// connections. A sync makes one request per firm and per legacy login
	// (55,000 for 5,000 firms and 50,000 logins), so its time is about
	// requests × round trip ÷ concurrency against the remote service: 16
	// halves the 8 chosen first (at 30 ms, ~100 s instead of ~200 s) and is
	// still a light load for one API; 429/503 answers slow it (Retry-After,
	// backoff). On the benchmark's 2 cores it is also faster (BENCHMARKS.md).
	DefaultCWAConcurrency    = 16
	DefaultCWAMinFraction    = 0.5
	DefaultCWAMaxBodyBytes   = 256 << 20     // the snapshot of every office
	DefaultCWAFakeListenAddr = "127.0.0.1:0" // any free port
)

// CWAConfig is the `cwa` section: the legacy CWA directory (the agency's
// Provider Data API) that jobs of kind cwa pull firms, offices and legacy
// logins from. The section is optional: without baseURL (and without fake)
// CWA sync is off.
type CWAConfig struct {
	// BaseURL of the Provider Data API, e.g. https://pda.example/api/v1.
	// With Fake set it may be empty: the in-process fake's URL is used.
	BaseURL string `yaml:"baseURL"`
	// APIKey is sent in APIKeyHeader on every request (usually env:CWA_API_KEY).
	APIKey       Secret `yaml:"apiKey"`
	APIKeyHeader string `yaml:"apiKeyHeader"`
	// Timeout bounds each HTTP request (attempt); RunTimeout bounds a whole sync.
	Timeout    time.Duration `yaml:"timeout"`
	RunTimeout time.Duration `yaml:"runTimeout"`
	// MaxAttempts per request (1 = no retry); retries back off exponentially
	// from Backoff up to MaxBackoff, with jitter, on 5xx, 429 and connection
	// errors. A Retry-After longer than MaxRetryAfter ends the run instead.
	MaxAttempts   int           `yaml:"maxAttempts"`
	Backoff       time.Duration `yaml:"backoff"`
	MaxBackoff    time.Duration `yaml:"maxBackoff"`
	MaxRetryAfter time.Duration `yaml:"maxRetryAfter"`
	// Concurrency is how many per-firm / per-login requests run at once.
	Concurrency int `yaml:"concurrency"`
	// MinFraction (the shrink guard): a snapshot with fewer firms or offices
	// than this fraction of the last good snapshot aborts the run before
	// anything is disabled. Omitted: DefaultCWAMinFraction (0.5). An
	// explicit 0 switches the guard off (any snapshot, even an empty one, is
	// applied); values outside 0..1 are refused. A pointer, so that an
	// explicit 0 differs from "not set".
	MinFraction *float64 `yaml:"minFraction"`
	// MaxBodyBytes limits every response body.
	MaxBodyBytes int64 `yaml:"maxBodyBytes"`
	// The schedule is a scheduler.jobs entry of kind cwa (like every job).
	// SyncAtStart triggers that job once when serve starts (development:
	// the demo has CWA data at once).
	SyncAtStart bool `yaml:"syncAtStart"`
	// Fake starts the fake CWA (cwasync/cwafake) in-process, serving Fake.Fixture;
	// only for development and the demo.
	Fake CWAFakeConfig `yaml:"fake"`
}

// CWAFakeConfig starts the in-process fake CWA.
type CWAFakeConfig struct {
	Enabled bool   `yaml:"enabled"`
	Fixture string `yaml:"fixture"` // JSON fixture, e.g. configs/demo/cwa.json
	Listen  string `yaml:"listen"`  // default 127.0.0.1:0 (any free port)
}

// ShrinkGuard returns MinFraction, or the default when it is not set; 0
// means the shrink guard is off.
func (c *CWAConfig) ShrinkGuard() float64 {
	if c.MinFraction == nil {
		return DefaultCWAMinFraction
	}
	return *c.MinFraction
}

// Enabled reports whether CWA sync is configured.
func (c *CWAConfig) Enabled() bool { return c.BaseURL != "" || c.Fake.Enabled }

func (c *CWAConfig) defaults() {
	if c.APIKeyHeader == "" {
		c.APIKeyHeader = DefaultCWAAPIKeyHeader
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultCWATimeout
	}
	if c.RunTimeout == 0 {
		c.RunTimeout = DefaultCWARunTimeout
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultCWAMaxAttempts
	}
	if c.Backoff == 0 {
		c.Backoff = DefaultCWABackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultCWAMaxBackoff
	}
	if c.MaxRetryAfter == 0 {
		c.MaxRetryAfter = DefaultCWAMaxRetryAfter
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultCWAConcurrency
	}
	if c.MinFraction == nil {
		v := DefaultCWAMinFraction
		c.MinFraction = &v
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultCWAMaxBodyBytes
	}
	if c.Fake.Enabled && c.Fake.Listen == "" {
		c.Fake.Listen = DefaultCWAFakeListenAddr
	}
}

func (c *CWAConfig) validate(p *Problems) {
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.Addf("cwa.baseURL", "must be an absolute http(s) URL, not %q", c.BaseURL)
		}
	}
	if c.BaseURL != "" && !c.Fake.Enabled && !c.APIKey.IsSet() {
		p.Addf("cwa.apiKey", "is required with baseURL (e.g. env:CWA_API_KEY)")
	}
	if strings.TrimSpace(c.APIKeyHeader) == "" || strings.ContainsAny(c.APIKeyHeader, " :\r\n") {
		p.Addf("cwa.apiKeyHeader", "must be an HTTP header name, not %q", c.APIKeyHeader)
	}
	if c.Timeout < 0 {
		p.Addf("cwa.timeout", "must not be negative")
	}
	if c.RunTimeout < 0 {
		p.Addf("cwa.runTimeout", "must not be negative")
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > 20 {
		p.Addf("cwa.maxAttempts", "must be between 1 and 20, not %d", c.MaxAttempts)
	}
	if c.Backoff < 0 || c.MaxBackoff < 0 || c.MaxRetryAfter < 0 {
		p.Addf("cwa.backoff", "backoff, maxBackoff and maxRetryAfter must not be negative")
	}
	if c.Backoff > c.MaxBackoff {
		p.Addf("cwa.backoff", "must not exceed maxBackoff (%s)", c.MaxBackoff)
	}
	if c.Concurrency < 1 || c.Concurrency > 256 {
		p.Addf("cwa.concurrency", "must be between 1 and 256, not %d", c.Concurrency)
	}
	if f := c.ShrinkGuard(); math.IsNaN(f) || f < 0 || f > 1 {
		p.Addf("cwa.minFraction", "must be between 0 and 1 (0 switches the shrink guard off), not %g", f)
	}
	if c.MaxBodyBytes < 0 {
		p.Addf("cwa.maxBodyBytes", "must not be negative")
	}
	if c.SyncAtStart && !c.Enabled() {
		p.Addf("cwa.syncAtStart", "needs cwa.baseURL or cwa.fake.enabled")
	}
	if c.Fake.Enabled && c.Fake.Fixture == "" {
		p.Addf("cwa.fake.fixture", "is required with fake.enabled (e.g. configs/demo/cwa.json)")
	}
	if !c.Fake.Enabled && c.Fake.Fixture != "" {
		p.Addf("cwa.fake.enabled", "fixture is set but the fake is not enabled")
	}
}
