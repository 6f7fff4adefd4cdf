package config

// Config is the whole configuration file. Each section is documented in
// configs/dirsyncd.example.yaml.
type Config struct {
	Env        string           `yaml:"env"` // "production" (JSON logs, default) or "development" (console logs)
	Log        LogConfig        `yaml:"log"`
	Store      StoreConfig      `yaml:"store"`
	Server     ServerConfig     `yaml:"server"`
	Tokens     []TokenConfig    `yaml:"tokens"`
	Scheduler  SchedulerConfig  `yaml:"scheduler"`
	SCIM       SCIMConfig       `yaml:"scim"`
	LDAP       LDAPConfig       `yaml:"ldap"`
	CWA        CWAConfig        `yaml:"cwa"`
	Mapping    MappingConfig    `yaml:"mapping"`
	Reconcile  ReconcileConfig  `yaml:"reconcile"`
	CaseAccess CaseAccessConfig `yaml:"caseAccess"`
	OIDC       OIDCConfig       `yaml:"oidc"`
}

// Development reports whether the configuration is for development.
func (c *Config) Development() bool { return c.Env == EnvDevelopment }
