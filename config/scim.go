package config

// Defaults of the scim section.
const (
	DefaultSCIMCount      = 100
	DefaultSCIMMaxResults = 1000
)

// SCIMConfig is the `scim` section: the SCIM 2.0 server under /scim/v2.
// Clients authenticate with tokens (top-level `tokens`) holding scope
// `scim`; each token's name is the audit actor ("scim:<name>") and its
// rateLimit/burst bound the client. Absolute resource locations use
// server.publicURL + "/scim/v2" (the request's Host when unset). Bodies
// are limited by server.maxBodyBytes (1 MiB).
type SCIMConfig struct {
	// Disabled turns the SCIM endpoint off (it is on by default).
	Disabled bool `yaml:"disabled"`
	// DefaultCount is the page size when a list request has no count.
	DefaultCount int `yaml:"defaultCount"`
	// MaxResults is the largest page a list request gets (count is capped).
	MaxResults int `yaml:"maxResults"`
}

func (c *SCIMConfig) defaults() {
	if c.DefaultCount == 0 {
		c.DefaultCount = DefaultSCIMCount
	}
	if c.MaxResults == 0 {
		c.MaxResults = DefaultSCIMMaxResults
	}
}

func (c *SCIMConfig) validate(p *Problems) {
	if c.DefaultCount < 0 {
		p.Addf("scim.defaultCount", "must not be negative")
	}
	if c.MaxResults < 0 {
		p.Addf("scim.maxResults", "must not be negative")
	}
	if c.MaxResults > 0 && c.DefaultCount > c.MaxResults {
		p.Addf("scim.defaultCount", "%d is larger than scim.maxResults (%d)", c.DefaultCount, c.MaxResults)
	}
}
