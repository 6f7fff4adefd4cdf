package config

// SCIMConfig is the `scim` section. Owned by the scim feature; fields are added with
// the feature that uses them.
type SCIMConfig struct{}

func (c *SCIMConfig) defaults() {}

func (c *SCIMConfig) validate(p *Problems) {}
