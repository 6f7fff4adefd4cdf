package config

// LDAPConfig is the `ldap` section. Owned by the ldap feature; fields are added with
// the feature that uses them.
type LDAPConfig struct{}

func (c *LDAPConfig) defaults() {}

func (c *LDAPConfig) validate(p *Problems) {}
