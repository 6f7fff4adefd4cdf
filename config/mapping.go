package config

// Defaults of the `mapping` section.
const (
	DefaultCataloguePath = "configs/catalogue.yaml"
	DefaultRulesPath     = "configs/rules.yaml"
)

// MappingConfig is the `mapping` section: where the role catalogue and the
// mapping rules live (mapping.LoadCatalogue / mapping.LoadRules validate the
// files themselves; `dirsyncd rules check` runs that validation).
type MappingConfig struct {
	// Catalogue is the role catalogue file (services and roles).
	Catalogue string `yaml:"catalogue"`
	// Rules is the ordered mapping rules file.
	Rules string `yaml:"rules"`
}

func (c *MappingConfig) defaults() {
	if c.Catalogue == "" {
		c.Catalogue = DefaultCataloguePath
	}
	if c.Rules == "" {
		c.Rules = DefaultRulesPath
	}
}

func (c *MappingConfig) validate(p *Problems) {
	if c.Catalogue == c.Rules {
		p.Addf("mapping.rules", "must be a different file from mapping.catalogue")
	}
}
