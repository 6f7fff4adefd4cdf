package config

import "time"

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

// TokenConfig is one static bearer token (automation, SCIM clients).
type TokenConfig struct {
	Name   string   `yaml:"name"`   // audit actor name, e.g. "entra"
	Token  Secret   `yaml:"token"`  // the token itself, or
	SHA256 string   `yaml:"sha256"` // its hex SHA-256, so the file holds no secret
	Scopes []string `yaml:"scopes"` // scim, admin:read, admin:write, support
	// RateLimit is requests per second for this client (0 = unlimited); Burst defaults to 2×.
	RateLimit float64 `yaml:"rateLimit"`
	Burst     int     `yaml:"burst"`
}

// SchedulerConfig names the cron jobs.
type SchedulerConfig struct {
	LeaseTTL time.Duration `yaml:"leaseTTL"`
	Jobs     []JobConfig   `yaml:"jobs"`
}

// JobConfig is one scheduled job: Kind picks the work (ldap-full,
// ldap-incremental, cwa, reconcile, case-expiry), Schedule is a cron
// expression (UTC; 5 fields or descriptors like @every 5m).
type JobConfig struct {
	Name     string            `yaml:"name"`
	Kind     string            `yaml:"kind"`
	Schedule string            `yaml:"schedule"`
	Params   map[string]string `yaml:"params"` // e.g. source: corp-ad
}
