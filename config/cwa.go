package config

// CWAConfig is the `cwa` section. Owned by the cwa feature; fields are added with
// the feature that uses them.
type CWAConfig struct{}

func (c *CWAConfig) defaults() {}

func (c *CWAConfig) validate(p *Problems) {}
