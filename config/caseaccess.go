package config

import (
	"fmt"
	"strings"
	"time"
)

// Defaults of the `caseAccess` section.
const (
	DefaultCaseExpiryLeaseTTL = 45 * time.Second
	DefaultCaseExpiryMaxWait  = 15 * time.Second
	DefaultCaseExpiryBatch    = 1000
)

// CaseAccessConfig is the `caseAccess` section (feature caseaccess: case
// invites, group and e-mail-domain grants, access decisions, expiry).
type CaseAccessConfig struct {
	// ChambersDomains are e-mail domains of barristers' chambers that are
	// never accepted for a domain grant, in addition to domains tied to a
	// chambers firm through its users' e-mails (e.g. chambers with no users
	// in dirsyncd yet). "x.co.uk" also refuses "x.co.uk.cjsm.net".
	ChambersDomains []string `yaml:"chambersDomains"`
	// Expiry configures the timer that revokes invites at their expiry.
	Expiry CaseExpiryConfig `yaml:"expiry"`
}

// CaseExpiryConfig configures the expiry timer (runs on the replica that
// holds the store lease "caseaccess-expiry").
type CaseExpiryConfig struct {
	// LeaseTTL: how long a replica's leadership lasts without renewal.
	LeaseTTL time.Duration `yaml:"leaseTTL"`
	// MaxWait: the longest the timer sleeps before re-reading the next
	// expiry from the store (catches changes made on other replicas and
	// renews the lease). Must be under leaseTTL and at most 60s, so an
	// expiry is applied within 60s even when set on another replica.
	MaxWait time.Duration `yaml:"maxWait"`
	// Batch: invites revoked per transaction.
	Batch int `yaml:"batch"`
}

func (c *CaseAccessConfig) defaults() {
	if c.Expiry.LeaseTTL == 0 {
		c.Expiry.LeaseTTL = DefaultCaseExpiryLeaseTTL
	}
	if c.Expiry.MaxWait == 0 {
		c.Expiry.MaxWait = DefaultCaseExpiryMaxWait
	}
	if c.Expiry.Batch == 0 {
		c.Expiry.Batch = DefaultCaseExpiryBatch
	}
}

func (c *CaseAccessConfig) validate(p *Problems) {
	if c.Expiry.MaxWait < time.Second || c.Expiry.MaxWait > time.Minute {
		p.Addf("caseAccess.expiry.maxWait", "must be between 1s and 60s, not %s", c.Expiry.MaxWait)
	}
	if c.Expiry.LeaseTTL <= c.Expiry.MaxWait {
		p.Addf("caseAccess.expiry.leaseTTL", "must be longer than caseAccess.expiry.maxWait (%s), not %s", c.Expiry.MaxWait, c.Expiry.LeaseTTL)
	}
	if c.Expiry.Batch < 1 || c.Expiry.Batch > 10000 {
		p.Addf("caseAccess.expiry.batch", "must be between 1 and 10000, not %d", c.Expiry.Batch)
	}
	for i, d := range c.ChambersDomains {
		if !plausibleDomain(d) {
			p.Addf(fmt.Sprintf("caseAccess.chambersDomains[%d]", i), "%q is not a well-formed domain", d)
		}
	}
}

// plausibleDomain: two or more dot-separated labels of letters, digits and
// inner hyphens (caseaccess.NormalizeDomain applies the full rule).
func plausibleDomain(d string) bool {
	d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
	labels := strings.Split(d, ".")
	if len(labels) < 2 || len(d) > 253 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}
