package config

// ReconcileConfig is the `reconcile` section. Owned by the reconcile feature; fields are added with
// the feature that uses them.
type ReconcileConfig struct{}

func (c *ReconcileConfig) defaults() {}

func (c *ReconcileConfig) validate(p *Problems) {}
