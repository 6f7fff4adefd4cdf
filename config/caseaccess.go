package config

// CaseAccessConfig is the `caseaccess` section. Owned by the caseaccess feature; fields are added with
// the feature that uses them.
type CaseAccessConfig struct{}

func (c *CaseAccessConfig) defaults() {}

func (c *CaseAccessConfig) validate(p *Problems) {}
