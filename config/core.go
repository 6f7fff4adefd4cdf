package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Defaults of the core sections.
const (
	DefaultSQLitePath      = "./var/dirsyncd.db"
	DefaultListen          = "127.0.0.1:8080"
	DefaultShutdownTimeout = 30 * time.Second
	DefaultMaxBodyBytes    = 1 << 20 // 1 MiB
	DefaultLeaseTTL        = 30 * time.Second
	DefaultConnectTimeout  = 30 * time.Second
	DefaultMaxConns        = 10
)

// Environments.
const (
	EnvProduction  = "production"
	EnvDevelopment = "development"
)

// KnownScopes is the list of token scopes. It equals auth.KnownScopes
// (auth imports config, so config cannot import auth); TestScopesMatchAuth
// catches a drift.
var KnownScopes = []string{"scim", "admin:read", "admin:write", "support"}

// JobKinds lists the job kinds a scheduled job may name. A feature adding a
// kind appends it here (and registers its implementation in cmd/dirsyncd).
var JobKinds = []string{"ldap-full", "ldap-incremental", "cwa", "reconcile", "case-expiry", "audit-verify"}

// CronParser parses job schedules: standard 5-field cron expressions and
// descriptors such as "@hourly" or "@every 5m". The scheduler uses the same
// parser, so a schedule that passes check-config is a schedule that runs.
var CronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// StoreConfig selects the store backend.
type StoreConfig struct {
	Driver string `yaml:"driver"` // "sqlite" (embedded default) or "postgres"
	Path   string `yaml:"path"`   // sqlite: database file
	DSN    Secret `yaml:"dsn"`    // postgres: connection string (usually env:DIRSYNCD_PG_DSN)
	// postgres: how long to keep retrying the first connection at start.
	ConnectTimeout time.Duration `yaml:"connectTimeout"`
	MaxConns       int32         `yaml:"maxConns"`
}

// ServerConfig is the HTTP listener.
type ServerConfig struct {
	Listen          string        `yaml:"listen"`          // e.g. 127.0.0.1:8080
	PublicURL       string        `yaml:"publicURL"`       // absolute base for SCIM meta.location
	ShutdownTimeout time.Duration `yaml:"shutdownTimeout"` // deadline for in-flight work at SIGTERM
	MaxBodyBytes    int64         `yaml:"maxBodyBytes"`
}

// LogConfig tunes logging; the format follows Config.Env.
type LogConfig struct {
	Level string `yaml:"level"` // debug, info (default), warn, error
}

// TokenConfig is one static bearer token (automation, SCIM clients).
type TokenConfig struct {
	Name   string   `yaml:"name"`   // audit actor name, e.g. "entra"
	Token  Secret   `yaml:"token"`  // the token itself, or
	SHA256 string   `yaml:"sha256"` // its hex SHA-256, so the file holds no secret
	Scopes []string `yaml:"scopes"` // scim, admin:read, admin:write, support
	// RateLimit is requests per second for this client (0 = unlimited); Burst defaults to 2×.
	RateLimit float64 `yaml:"rateLimit"`
	Burst     int     `yaml:"burst"`
	// Dev marks the development token (allowed only with env: development):
	// when its token is "env:NAME" and NAME is unset, `serve` generates a
	// random token at start and prints it once to stdout.
	Dev bool `yaml:"dev"`
}

// NeedsGeneratedToken reports whether t is a development token whose
// environment variable was unset, so serve must generate its value.
func (t *TokenConfig) NeedsGeneratedToken() bool {
	return t.Dev && t.SHA256 == "" && t.Token.Value() == ""
}

// SchedulerConfig names the cron jobs.
type SchedulerConfig struct {
	LeaseTTL time.Duration `yaml:"leaseTTL"`
	Jobs     []JobConfig   `yaml:"jobs"`
}

// JobConfig is one scheduled job: Kind picks the work (see JobKinds),
// Schedule is a cron expression (UTC; 5 fields or descriptors like
// "@every 5m"). An empty schedule makes a job that only runs when
// triggered by hand (`dirsyncd run NAME`, POST /api/v1/runs).
type JobConfig struct {
	Name     string            `yaml:"name"`
	Kind     string            `yaml:"kind"`
	Schedule string            `yaml:"schedule"`
	Params   map[string]string `yaml:"params"` // e.g. source: corp-ad
}

func (c *Config) coreDefaults() {
	if c.Env == "" {
		c.Env = EnvProduction
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	s := &c.Store
	if s.Driver == "" {
		s.Driver = "sqlite"
	}
	if s.Driver == "sqlite" && s.Path == "" {
		s.Path = DefaultSQLitePath
	}
	if s.ConnectTimeout == 0 {
		s.ConnectTimeout = DefaultConnectTimeout
	}
	if s.MaxConns == 0 {
		s.MaxConns = DefaultMaxConns
	}
	v := &c.Server
	if v.Listen == "" {
		v.Listen = DefaultListen
	}
	if v.ShutdownTimeout == 0 {
		v.ShutdownTimeout = DefaultShutdownTimeout
	}
	if v.MaxBodyBytes == 0 {
		v.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.Scheduler.LeaseTTL == 0 {
		c.Scheduler.LeaseTTL = DefaultLeaseTTL
	}
	for i := range c.Tokens {
		if t := &c.Tokens[i]; t.RateLimit > 0 && t.Burst == 0 {
			t.Burst = int(2*t.RateLimit + 0.5)
			if t.Burst < 1 {
				t.Burst = 1
			}
		}
	}
}

func (c *Config) coreValidate(p *Problems) {
	switch c.Env {
	case EnvProduction, EnvDevelopment:
	default:
		p.Addf("env", "must be %q or %q, not %q", EnvProduction, EnvDevelopment, c.Env)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.Addf("log.level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}

	s := c.Store
	switch s.Driver {
	case "sqlite":
		if s.Path == "" {
			p.Addf("store.path", "is required with driver sqlite")
		}
		if s.DSN.IsSet() {
			p.Addf("store.dsn", "is only used with driver postgres")
		}
	case "postgres":
		if !s.DSN.IsSet() {
			p.Addf("store.dsn", "is required with driver postgres (e.g. env:DIRSYNCD_PG_DSN)")
		}
	default:
		p.Addf("store.driver", "must be sqlite or postgres, not %q", s.Driver)
	}
	if s.ConnectTimeout < 0 {
		p.Addf("store.connectTimeout", "must not be negative")
	}
	if s.MaxConns < 0 {
		p.Addf("store.maxConns", "must not be negative")
	}

	v := c.Server
	if _, port, err := net.SplitHostPort(v.Listen); err != nil {
		p.Addf("server.listen", "must be host:port: %v", err)
	} else if port == "" {
		p.Addf("server.listen", "needs a port")
	}
	if v.PublicURL != "" {
		u, err := url.Parse(v.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.Addf("server.publicURL", "must be an absolute http(s) URL, not %q", v.PublicURL)
		}
	}
	if v.ShutdownTimeout < 0 {
		p.Addf("server.shutdownTimeout", "must not be negative")
	}
	if v.MaxBodyBytes < 0 {
		p.Addf("server.maxBodyBytes", "must not be negative")
	}

	names := map[string]int{}
	hashes := map[string]int{} // SHA-256 (hex) → first token with it
	for i, t := range c.Tokens {
		path := fmt.Sprintf("tokens[%d]", i)
		// Two entries for one token: the verifier would silently give it
		// the last one's name and scopes. (The value is never printed.)
		h := strings.ToLower(t.SHA256)
		if t.Token.Value() != "" {
			sum := sha256.Sum256([]byte(t.Token.Value()))
			h = hex.EncodeToString(sum[:])
		}
		if isHex64(h) {
			if j, dup := hashes[h]; dup {
				p.Addf(path, "is the same token as tokens[%d]; each client needs its own token", j)
			} else {
				hashes[h] = i
			}
		}
		if t.Name == "" {
			p.Addf(path+".name", "is required")
		} else if j, dup := names[t.Name]; dup {
			p.Addf(path+".name", "%q is also the name of tokens[%d]; names must be unique", t.Name, j)
		} else {
			names[t.Name] = i
		}
		switch {
		case t.Token.IsSet() && t.SHA256 != "":
			p.Addf(path, "set exactly one of token and sha256, not both")
		case !t.Token.IsSet() && t.SHA256 == "":
			p.Addf(path, "set exactly one of token and sha256")
		case t.SHA256 != "" && !isHex64(t.SHA256):
			p.Addf(path+".sha256", "must be 64 hexadecimal characters")
		}
		if len(t.Scopes) == 0 {
			p.Addf(path+".scopes", "needs at least one scope (%s)", strings.Join(KnownScopes, ", "))
		}
		for j, sc := range t.Scopes {
			if !slices.Contains(KnownScopes, sc) {
				p.Addf(fmt.Sprintf("%s.scopes[%d]", path, j), "unknown scope %q (known: %s)", sc, strings.Join(KnownScopes, ", "))
			}
		}
		if t.RateLimit < 0 {
			p.Addf(path+".rateLimit", "must not be negative")
		}
		if t.Burst < 0 {
			p.Addf(path+".burst", "must not be negative")
		}
		if t.Dev && c.Env != EnvDevelopment {
			p.Addf(path+".dev", "a development token is only allowed with env: development")
		}
		if t.Dev && t.SHA256 != "" {
			p.Addf(path+".dev", "a development token cannot be given as sha256")
		}
	}

	if c.Scheduler.LeaseTTL < time.Second {
		p.Addf("scheduler.leaseTTL", "must be at least 1s, not %s", c.Scheduler.LeaseTTL)
	}
	jobs := map[string]int{}
	for i, j := range c.Scheduler.Jobs {
		path := fmt.Sprintf("scheduler.jobs[%d]", i)
		if j.Name == "" {
			p.Addf(path+".name", "is required")
		} else if k, dup := jobs[j.Name]; dup {
			p.Addf(path+".name", "%q is also the name of scheduler.jobs[%d]; names must be unique", j.Name, k)
		} else {
			jobs[j.Name] = i
		}
		if !slices.Contains(JobKinds, j.Kind) {
			p.Addf(path+".kind", "unknown kind %q (known: %s)", j.Kind, strings.Join(JobKinds, ", "))
		}
		if j.Schedule != "" {
			if _, err := CronParser.Parse(j.Schedule); err != nil {
				p.Addf(path+".schedule", "%q does not parse: %v", j.Schedule, err)
			} else if strings.HasPrefix(strings.TrimSpace(j.Schedule), "TZ=") || strings.HasPrefix(strings.TrimSpace(j.Schedule), "CRON_TZ=") {
				p.Addf(path+".schedule", "schedules are UTC; remove the time zone prefix")
			}
		}
	}
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return true
}

// Job returns the job named name.
func (c *Config) Job(name string) (JobConfig, bool) {
	for _, j := range c.Scheduler.Jobs {
		if j.Name == name {
			return j, true
		}
	}
	return JobConfig{}, false
}
