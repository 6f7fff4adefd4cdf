package config

import (
	"strings"
	"testing"
	"time"
)

func TestCaseAccessDefaults(t *testing.T) {
	var c CaseAccessConfig
	c.defaults()
	var p Problems
	c.validate(&p)
	if len(p.List()) != 0 {
		t.Fatalf("defaults invalid: %v", p.List())
	}
	if c.Expiry.LeaseTTL != DefaultCaseExpiryLeaseTTL || c.Expiry.MaxWait != DefaultCaseExpiryMaxWait || c.Expiry.Batch != DefaultCaseExpiryBatch {
		t.Fatalf("defaults = %+v", c)
	}
}

func TestCaseAccessValidateReportsEveryProblem(t *testing.T) {
	c := CaseAccessConfig{
		ChambersDomains: []string{"chambers.co.uk", "not a domain", "nodot"},
		Expiry:          CaseExpiryConfig{LeaseTTL: 10 * time.Second, MaxWait: 2 * time.Minute, Batch: 20000},
	}
	var p Problems
	c.validate(&p)
	got := strings.Join(p.List(), "\n")
	for _, want := range []string{"caseAccess.expiry.maxWait", "caseAccess.expiry.leaseTTL", "caseAccess.expiry.batch",
		"caseAccess.chambersDomains[1]", "caseAccess.chambersDomains[2]"} {
		if !strings.Contains(got, want) {
			t.Errorf("problems lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "chambersDomains[0]") {
		t.Errorf("a valid domain was reported:\n%s", got)
	}
}
