package config

import (
	"net/url"
	"strings"
	"time"
)

// Defaults of the `reconcile` section.
const (
	DefaultReconcileMinRevokes     = 50
	DefaultReconcileRevokePercent  = 5.0
	DefaultReconcileBatchSize      = 500
	DefaultReconcileWorkers        = 2
	DefaultReconcileWorkerBatch    = 100
	DefaultReconcileMaxFailures    = 5
	DefaultReconcileBackoff        = time.Second
	DefaultReconcileMaxBackoff     = 5 * time.Minute
	DefaultOutboxTimeout           = 10 * time.Second
	DefaultOutboxMaxAttempts       = 8
	DefaultLDAPTargetGroupTemplate = "cn={service}-{role},{ou}"
)

// ReconcileConfig is the `reconcile` section: the guard that holds runs
// revoking too much, batch sizes, the event-driven worker, and the optional
// targets (LDAP role groups, CCMS outbox). The full reconcile runs on the
// schedule of a scheduler.jobs entry of kind reconcile.
type ReconcileConfig struct {
	// Guard: a run revoking more than max(MinRevokes, RevokePercent% of all
	// grants) is held until `dirsyncd runs approve RUN --plan-hash H`.
	MinRevokes    int     `yaml:"minRevokes"`
	RevokePercent float64 `yaml:"revokePercent"`
	// BatchSize is how many changes are applied per transaction.
	BatchSize int `yaml:"batchSize"`
	// LinkSources names the sources ("scim:entra", "ldap:corp") whose links a
	// full reconcile reads in bulk (besides every group's source and "cwa");
	// users not covered are read one by one: slower, never wrong.
	LinkSources []string `yaml:"linkSources"`
	// Worker reconciles users changed by SCIM, LDAP and CWA.
	Worker ReconcileWorkerConfig `yaml:"worker"`
	// LDAPTarget, when enabled, keeps one LDAP group per role.
	LDAPTarget LDAPTargetConfig `yaml:"ldapTarget"`
	// Outbox delivers CCMS change messages, when endpoint is set.
	Outbox OutboxConfig `yaml:"outbox"`
}

// ReconcileWorkerConfig configures the event-driven worker.
type ReconcileWorkerConfig struct {
	Concurrency int           `yaml:"concurrency"` // batches at once
	BatchSize   int           `yaml:"batchSize"`   // users per batch
	MaxFailures int           `yaml:"maxFailures"` // failures in a row before quarantine
	Backoff     time.Duration `yaml:"backoff"`     // first retry delay, doubled per failure
	MaxBackoff  time.Duration `yaml:"maxBackoff"`
}

// LDAPTargetConfig is the optional LDAP role-group target: for each role a
// group named by GroupTemplate ({service}, {role}, {ou}) under OU whose
// members are the role's holders.
type LDAPTargetConfig struct {
	Enabled bool `yaml:"enabled"`
	// Source names the ldap.sources entry whose connection is used.
	Source        string `yaml:"source"`
	OU            string `yaml:"ou"`
	GroupTemplate string `yaml:"groupTemplate"`
	// Correct drift (true) or only report it (false).
	Correct bool `yaml:"correct"`
}

// OutboxConfig is the CCMS change-message outbox: messages are written in
// the transaction that changes the grants and delivered every Interval.
type OutboxConfig struct {
	Endpoint    string        `yaml:"endpoint"` // http(s) URL; empty = off
	Token       Secret        `yaml:"token"`    // bearer token, usually env:CCMS_TOKEN
	Timeout     time.Duration `yaml:"timeout"`  // per request
	MaxAttempts int           `yaml:"maxAttempts"`
	Backoff     time.Duration `yaml:"backoff"`  // first retry delay, doubled per attempt
	Interval    time.Duration `yaml:"interval"` // how often serve delivers pending messages
}

func (c *ReconcileConfig) defaults() {
	if c.MinRevokes == 0 {
		c.MinRevokes = DefaultReconcileMinRevokes
	}
	if c.RevokePercent == 0 {
		c.RevokePercent = DefaultReconcileRevokePercent
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultReconcileBatchSize
	}
	w := &c.Worker
	if w.Concurrency == 0 {
		w.Concurrency = DefaultReconcileWorkers
	}
	if w.BatchSize == 0 {
		w.BatchSize = DefaultReconcileWorkerBatch
	}
	if w.MaxFailures == 0 {
		w.MaxFailures = DefaultReconcileMaxFailures
	}
	if w.Backoff == 0 {
		w.Backoff = DefaultReconcileBackoff
	}
	if w.MaxBackoff == 0 {
		w.MaxBackoff = DefaultReconcileMaxBackoff
	}
	if c.LDAPTarget.GroupTemplate == "" {
		c.LDAPTarget.GroupTemplate = DefaultLDAPTargetGroupTemplate
	}
	if c.Outbox.Timeout == 0 {
		c.Outbox.Timeout = DefaultOutboxTimeout
	}
	if c.Outbox.MaxAttempts == 0 {
		c.Outbox.MaxAttempts = DefaultOutboxMaxAttempts
	}
	if c.Outbox.Backoff == 0 {
		c.Outbox.Backoff = time.Second
	}
	if c.Outbox.Interval == 0 {
		c.Outbox.Interval = 10 * time.Second
	}
}

func (c *ReconcileConfig) validate(p *Problems) {
	if c.MinRevokes < 0 {
		p.Addf("reconcile.minRevokes", "must not be negative")
	}
	if c.RevokePercent < 0 || c.RevokePercent > 100 {
		p.Addf("reconcile.revokePercent", "must be between 0 and 100")
	}
	if c.BatchSize < 0 {
		p.Addf("reconcile.batchSize", "must not be negative")
	}
	w := c.Worker
	if w.Concurrency < 0 || w.BatchSize < 0 || w.MaxFailures < 0 {
		p.Addf("reconcile.worker", "concurrency, batchSize and maxFailures must not be negative")
	}
	if w.Backoff < 0 || w.MaxBackoff < w.Backoff {
		p.Addf("reconcile.worker.maxBackoff", "must be at least backoff (%v)", w.Backoff)
	}
	if t := c.LDAPTarget; t.Enabled {
		if t.Source == "" {
			p.Addf("reconcile.ldapTarget.source", "is required when enabled")
		}
		if t.OU == "" {
			p.Addf("reconcile.ldapTarget.ou", "is required when enabled")
		}
		if !strings.Contains(t.GroupTemplate, "{role}") {
			p.Addf("reconcile.ldapTarget.groupTemplate", "must contain {role}")
		}
	}
	if o := c.Outbox; o.Endpoint != "" {
		u, err := url.Parse(o.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.Addf("reconcile.outbox.endpoint", "must be an absolute http(s) URL")
		}
		if o.Timeout < 0 || o.MaxAttempts < 0 || o.Backoff < 0 || o.Interval < 0 {
			p.Addf("reconcile.outbox", "timeout, maxAttempts, backoff and interval must not be negative")
		}
	}
}
