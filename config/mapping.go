package config

// MappingConfig is the `mapping` section. Owned by the mapping feature; fields are added with
// the feature that uses them.
type MappingConfig struct{}

func (c *MappingConfig) defaults() {}

func (c *MappingConfig) validate(p *Problems) {}
