package caseaccess

import (
	"sort"
	"strings"
	"time"

	"github.com/dirsyncd/dirsyncd/directory"
)

// cjsmSuffix ends the secure-mail domains of the Criminal Justice Secure
// eMail service: "firm.co.uk.cjsm.net" is firm.co.uk's CJSM domain.
const cjsmSuffix = ".cjsm.net"

// Limits on free text (bodies are also size-limited by the server).
const (
	maxRefLen       = 64
	maxTextLen      = 200
	maxMessageLen   = 2000
	maxDefendants   = 200
	maxDomainLength = 253
)

// NormalizeDomain lower-cases and validates an e-mail domain: DNS labels of
// letters, digits and inner hyphens (1-63 characters), at least two
// labels, an alphabetic top-level label, 253 characters at most. The
// empty string means malformed.
func NormalizeDomain(d string) (string, bool) {
	d = strings.ToLower(strings.TrimSpace(d))
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > maxDomainLength {
		return "", false
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return "", false
	}
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", false
			}
		}
	}
	tld := labels[len(labels)-1]
	for i := 0; i < len(tld); i++ {
		if tld[i] < 'a' || tld[i] > 'z' {
			return "", false
		}
	}
	return d, true
}

// relatedDomains are the e-mail domains that tie d to a firm: d itself and,
// for a CJSM domain, the firm's ordinary domain.
func relatedDomains(d string) []string {
	out := []string{d}
	if base, ok := strings.CutSuffix(d, cjsmSuffix); ok && strings.Contains(base, ".") {
		out = append(out, base)
	}
	return out
}

// emailDomain returns the lower-cased domain of an e-mail address.
func emailDomain(email string) string {
	i := strings.LastIndexByte(email, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(email[i+1:], "."))
}

// userDomains are the domains of all of u's e-mails.
func userDomains(u directory.User) map[string]bool {
	out := map[string]bool{}
	if d := emailDomain(u.Email); d != "" {
		out[d] = true
	}
	for _, e := range u.Emails {
		if d := emailDomain(e.Value); d != "" {
			out[d] = true
		}
	}
	return out
}

// locationMatches: an empty grant location matches every user.
func locationMatches(grantLoc string, u directory.User) bool {
	return grantLoc == "" || strings.EqualFold(strings.TrimSpace(grantLoc), strings.TrimSpace(u.Location))
}

func groupMatches(g GroupGrant, u directory.User) bool {
	return u.UsualRole != "" && strings.EqualFold(strings.TrimSpace(g.UsualRole), strings.TrimSpace(u.UsualRole)) &&
		locationMatches(g.Location, u)
}

func domainMatches(g DomainGrant, domains map[string]bool, u directory.User) bool {
	return domains[g.Domain] && locationMatches(g.Location, u)
}

// cleanList trims, drops empties and duplicates, and sorts.
func cleanList(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		s = strings.TrimSpace(s)
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// checkDefendants validates defendants against the case's list.
func checkDefendants(field string, c Case, ds []string) *Error {
	if len(ds) > maxDefendants {
		return invalid(field, "at most %d defendants", maxDefendants)
	}
	if len(c.Defendants) == 0 {
		return nil
	}
	known := map[string]bool{}
	for _, d := range c.Defendants {
		known[d] = true
	}
	for _, d := range ds {
		if !known[d] {
			return invalid(field, "%q is not a defendant of case %s (defendants: %s)", d, c.Ref, strings.Join(c.Defendants, ", "))
		}
	}
	return nil
}

// checkExpiry: an expiry must be after now, at the precision it is
// stored with (microseconds): one less than a microsecond ahead would be
// stored as now, an invite that is never live.
func checkExpiry(field string, exp *time.Time, now time.Time) *Error {
	if exp == nil {
		return nil
	}
	if !exp.UTC().Truncate(time.Microsecond).After(now) {
		return invalid(field, "expiry %s is not in the future (now %s)", exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

func checkText(field, v string, max int, required bool) *Error {
	if required && strings.TrimSpace(v) == "" {
		return invalid(field, "is required")
	}
	if len(v) > max {
		return invalid(field, "longer than %d characters", max)
	}
	return nil
}

func checkRef(ref string) *Error {
	if e := checkText("ref", ref, maxRefLen, true); e != nil {
		return e
	}
	for _, r := range ref {
		if r < 0x21 || r > 0x7e || r == '/' {
			return invalid("ref", "%q: use printable ASCII without spaces or '/'", ref)
		}
	}
	return nil
}
