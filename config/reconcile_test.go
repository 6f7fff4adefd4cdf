package config

import (
	"strings"
	"testing"
)

func TestMappingAndReconcileSections(t *testing.T) {
	c, err := Parse([]byte("env: development\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Mapping.Catalogue != DefaultCataloguePath || c.Mapping.Rules != DefaultRulesPath {
		t.Errorf("mapping defaults %+v", c.Mapping)
	}
	r := c.Reconcile
	if r.MinRevokes != 50 || r.RevokePercent != 5 || r.BatchSize != 500 || r.Worker.MaxFailures != 5 || r.Worker.Backoff <= 0 {
		t.Errorf("reconcile defaults %+v", r)
	}
	_, err = Parse([]byte(`
env: development
mapping: {catalogue: x.yaml, rules: x.yaml}
reconcile:
  minRevokes: -1
  revokePercent: 150
  worker: {backoff: 10s, maxBackoff: 1s}
  ldapTarget: {enabled: true}
  outbox: {endpoint: "ftp://x"}
`))
	if err == nil {
		t.Fatal("want problems")
	}
	for _, w := range []string{
		"mapping.rules: must be a different file",
		"reconcile.minRevokes: must not be negative",
		"reconcile.revokePercent: must be between 0 and 100",
		"reconcile.worker.maxBackoff: must be at least backoff",
		"reconcile.ldapTarget.source: is required",
		"reconcile.outbox.endpoint: must be an absolute http(s) URL",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in %v", w, err)
		}
	}
}
