package config

import (
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// LDAPConfig is the `ldap` section: the LDAP directories dirsyncd pulls
// users, groups and memberships from. Several sources are allowed; each is
// named and its name is the audit actor "ldap:<name>".
type LDAPConfig struct {
	Sources []LDAPSource `yaml:"sources"`
}

// LDAPSource is one LDAP directory. Its schedules are scheduler jobs of
// kind ldap-incremental and ldap-full with params {source: <name>}.
type LDAPSource struct {
	Name string `yaml:"name"` // e.g. corp-ad; the link source is "ldap:<name>"
	// URL is ldap://host:port, ldaps://host:port; StartTLS upgrades ldap://.
	URL            string `yaml:"url"`
	StartTLS       bool   `yaml:"startTLS"`
	CAFile         string `yaml:"caFile"`         // PEM CA bundle for ldaps/StartTLS ("" = system roots)
	ClientCertFile string `yaml:"clientCertFile"` // optional client certificate (PEM)
	ClientKeyFile  string `yaml:"clientKeyFile"`
	ServerName     string `yaml:"serverName"` // TLS server name, default the URL's host
	BindDN         string `yaml:"bindDN"`
	BindPassword   Secret `yaml:"bindPassword"`

	Dialect string `yaml:"dialect"` // openldap, activedirectory or generic

	UserBaseDNs  []string `yaml:"userBaseDNs"`
	UserFilter   string   `yaml:"userFilter"` // default per dialect
	GroupBaseDNs []string `yaml:"groupBaseDNs"`
	GroupFilter  string   `yaml:"groupFilter"` // default per dialect

	PageSize int `yaml:"pageSize"` // RFC 2696 page size, default 1000
	// GroupPageSize is the page size of group reads (default 100): a group
	// entry carries its whole member list, so a page of 1,000 groups of a
	// 100,000-user directory held ~150,000 member DNs at once (decoded,
	// with the next page on its way) and set the process's peak memory.
	GroupPageSize  int           `yaml:"groupPageSize"`
	BatchSize      int           `yaml:"batchSize"`      // users written per store transaction, default 1000
	DialTimeout    time.Duration `yaml:"dialTimeout"`    // default 10s
	RequestTimeout time.Duration `yaml:"requestTimeout"` // per LDAP request (one page), default 60s
	RunTimeout     time.Duration `yaml:"runTimeout"`     // whole run, default 30m

	Attributes LDAPAttributeMap `yaml:"attributes"`
	// MemberAttribute is member, uniqueMember or memberUid (default per dialect).
	MemberAttribute string `yaml:"memberAttribute"`
	Nested          *bool  `yaml:"nested"` // resolve group-in-group membership (default true)
	// Correlate says how an entry without a link finds an existing user,
	// tried in order after the stable-id link: "email", "userName".
	Correlate []string `yaml:"correlate"`
	// MinFullFraction (the shrink guard) aborts a full sync that returns
	// fewer users or groups than this fraction of the last successful full
	// sync. Omitted: 0.5. An explicit 0 switches the guard off (any complete
	// read is applied, even an empty one: a deliberate choice, e.g. while
	// moving a source to another base DN); values outside 0..1 are refused.
	// A pointer, so that an explicit 0 differs from "not set" (as
	// cwa.minFraction).
	MinFullFraction *float64 `yaml:"minFullFraction"`
	// Overlap re-reads entries changed this long before the high-water mark
	// in incremental runs (default 5m).
	Overlap time.Duration `yaml:"overlap"`
	// Referrals says what a search reference (RFC 4511 4.5.3: part of the
	// subtree is held by another server) does to a run: "abort" (default)
	// fails it before anything is marked gone, since the entries there
	// were not read; "ignore" reads on and counts them, for a base DN
	// whose referred parts hold no users or groups of this source (AD's
	// DomainDnsZones, ForestDnsZones and Configuration under a domain
	// root). They are never followed: the bind would go to another server.
	Referrals string `yaml:"referrals"`
}

// Referral policies.
const (
	LDAPReferralsAbort  = "abort"
	LDAPReferralsIgnore = "ignore"
)

// GroupPage is the page size of group reads: GroupPageSize, or (not set)
// 100 or PageSize when that is smaller.
func (s *LDAPSource) GroupPage() int {
	if s.GroupPageSize > 0 {
		return s.GroupPageSize
	}
	if s.PageSize > 0 && s.PageSize < 100 {
		return s.PageSize
	}
	return 100
}

// DefaultLDAPMinFullFraction is the shrink guard of a source that sets none.
const DefaultLDAPMinFullFraction = 0.5

// ShrinkGuard returns MinFullFraction, or the default when it is not set;
// 0 means the shrink guard is off.
func (s *LDAPSource) ShrinkGuard() float64 {
	if s.MinFullFraction == nil {
		return DefaultLDAPMinFullFraction
	}
	return *s.MinFullFraction
}

// LDAPAttributeMap names the LDAP attribute for each user field.
type LDAPAttributeMap struct {
	UserName    string `yaml:"userName"`
	Email       string `yaml:"email"`
	GivenName   string `yaml:"givenName"`
	FamilyName  string `yaml:"familyName"`
	DisplayName string `yaml:"displayName"`
	StableID    string `yaml:"stableId"` // entryUUID or objectGUID
	FirmNumber  string `yaml:"firmNumber"`
	UsualRole   string `yaml:"usualRole"`
	Location    string `yaml:"location"`
	UserType    string `yaml:"userType"`
	GroupName   string `yaml:"groupName"` // default cn
}

// LDAP dialects.
const (
	LDAPDialectOpenLDAP = "openldap"
	LDAPDialectAD       = "activedirectory"
	LDAPDialectGeneric  = "generic"
)

// NestedEnabled reports whether group-in-group membership is resolved.
func (s *LDAPSource) NestedEnabled() bool { return s.Nested == nil || *s.Nested }

// Source returns a source by name.
func (c *LDAPConfig) Source(name string) (LDAPSource, bool) {
	for _, s := range c.Sources {
		if s.Name == name {
			return s, true
		}
	}
	return LDAPSource{}, false
}

func (c *LDAPConfig) defaults() {
	for i := range c.Sources {
		c.Sources[i].ApplyDefaults()
	}
}

func setDefault(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

// ApplyDefaults fills unset options (dialect-dependent filters, attributes
// and member attribute, page size, timeouts, safety fraction, overlap).
func (s *LDAPSource) ApplyDefaults() {
	setDefault(&s.Dialect, LDAPDialectOpenLDAP)
	ad := s.Dialect == LDAPDialectAD
	if s.PageSize == 0 {
		s.PageSize = 1000
	}
	if s.GroupPageSize == 0 {
		s.GroupPageSize = s.GroupPage()
	}
	if s.BatchSize == 0 {
		s.BatchSize = 1000
	}
	if s.DialTimeout == 0 {
		s.DialTimeout = 10 * time.Second
	}
	if s.RequestTimeout == 0 {
		s.RequestTimeout = 60 * time.Second
	}
	if s.RunTimeout == 0 {
		s.RunTimeout = 30 * time.Minute
	}
	setDefault(&s.Referrals, LDAPReferralsAbort)
	if s.MinFullFraction == nil {
		v := DefaultLDAPMinFullFraction
		s.MinFullFraction = &v
	}
	if s.Overlap == 0 {
		s.Overlap = 5 * time.Minute
	}
	if len(s.Correlate) == 0 {
		s.Correlate = []string{"email", "userName"}
	}
	if len(s.GroupBaseDNs) == 0 {
		s.GroupBaseDNs = s.UserBaseDNs
	}
	a := &s.Attributes
	setDefault(&a.Email, "mail")
	setDefault(&a.GivenName, "givenName")
	setDefault(&a.FamilyName, "sn")
	setDefault(&a.DisplayName, "displayName")
	setDefault(&a.GroupName, "cn")
	if ad {
		setDefault(&s.UserFilter, "(&(objectCategory=person)(objectClass=user))")
		setDefault(&s.GroupFilter, "(objectClass=group)")
		setDefault(&s.MemberAttribute, "member")
		setDefault(&a.UserName, "sAMAccountName")
		setDefault(&a.StableID, "objectGUID")
	} else {
		setDefault(&s.UserFilter, "(objectClass=inetOrgPerson)")
		setDefault(&s.GroupFilter, "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))")
		setDefault(&s.MemberAttribute, "member")
		setDefault(&a.UserName, "uid")
		setDefault(&a.StableID, "entryUUID")
	}
}

func (c *LDAPConfig) validate(p *Problems) {
	seen := map[string]bool{}
	for i := range c.Sources {
		s := &c.Sources[i]
		path := fmt.Sprintf("ldap.sources[%d]", i)
		switch {
		case s.Name == "":
			p.Addf(path+".name", "required")
		case strings.ContainsAny(s.Name, " :/"):
			p.Addf(path+".name", "%q must not contain spaces, ':' or '/'", s.Name)
		case seen[s.Name]:
			p.Addf(path+".name", "duplicate source %q", s.Name)
		}
		seen[s.Name] = true
		if u, err := url.Parse(s.URL); err != nil || (u.Scheme != "ldap" && u.Scheme != "ldaps") || u.Host == "" {
			p.Addf(path+".url", "want ldap://host[:port] or ldaps://host[:port], got %q", s.URL)
		} else if s.StartTLS && u.Scheme == "ldaps" {
			p.Addf(path+".startTLS", "StartTLS needs an ldap:// URL, not ldaps://")
		}
		if (s.ClientCertFile == "") != (s.ClientKeyFile == "") {
			p.Addf(path+".clientCertFile", "clientCertFile and clientKeyFile go together")
		}
		if s.BindDN != "" && !s.BindPassword.IsSet() {
			p.Addf(path+".bindPassword", "required when bindDN is set")
		} else if s.BindDN != "" && s.BindPassword.resolved && s.BindPassword.value == "" {
			// An empty password makes an unauthenticated bind (RFC 4513
			// 5.1.2), which servers may accept as anonymous.
			p.Addf(path+".bindPassword", "%s is empty", s.BindPassword.Source())
		}
		switch s.Referrals {
		case LDAPReferralsAbort, LDAPReferralsIgnore, "":
		default:
			p.Addf(path+".referrals", "want abort or ignore, got %q", s.Referrals)
		}
		switch s.Dialect {
		case LDAPDialectOpenLDAP, LDAPDialectAD, LDAPDialectGeneric:
		default:
			p.Addf(path+".dialect", "want openldap, activedirectory or generic, got %q", s.Dialect)
		}
		if len(s.UserBaseDNs) == 0 {
			p.Addf(path+".userBaseDNs", "at least one base DN is required")
		}
		for j, dn := range append(append([]string(nil), s.UserBaseDNs...), s.GroupBaseDNs...) {
			if !strings.Contains(dn, "=") {
				p.Addf(fmt.Sprintf("%s.baseDNs[%d]", path, j), "%q is not a DN (quote DNs in YAML lists: [a,b] splits on commas)", dn)
			}
		}
		for _, f := range []struct{ key, filter string }{{"userFilter", s.UserFilter}, {"groupFilter", s.GroupFilter}} {
			if !strings.HasPrefix(f.filter, "(") {
				p.Addf(path+"."+f.key, "filters must be parenthesised LDAP filters")
			} else if _, err := ldap.CompileFilter(f.filter); err != nil {
				p.Addf(path+"."+f.key, "%q is not an LDAP filter: %v", f.filter, err)
			}
		}
		if s.PageSize < 1 || s.PageSize > 100000 {
			p.Addf(path+".pageSize", "want 1..100000, got %d", s.PageSize)
		}
		if s.GroupPageSize < 1 || s.GroupPageSize > 100000 {
			p.Addf(path+".groupPageSize", "want 1..100000, got %d", s.GroupPageSize)
		}
		if s.BatchSize < 1 {
			p.Addf(path+".batchSize", "want > 0, got %d", s.BatchSize)
		}
		switch s.MemberAttribute {
		case "member", "uniqueMember", "memberUid":
		default:
			p.Addf(path+".memberAttribute", "want member, uniqueMember or memberUid, got %q", s.MemberAttribute)
		}
		for j, c := range s.Correlate {
			if c != "email" && c != "userName" {
				p.Addf(fmt.Sprintf("%s.correlate[%d]", path, j), "want email or userName, got %q", c)
			}
		}
		if f := s.ShrinkGuard(); math.IsNaN(f) || f < 0 || f > 1 {
			p.Addf(path+".minFullFraction", "want 0..1 (0 switches the shrink guard off), got %v", f)
		}
		if s.Attributes.StableID == "" || s.Attributes.UserName == "" {
			p.Addf(path+".attributes", "stableId and userName are required")
		}
		if s.DialTimeout < 0 || s.RequestTimeout < 0 || s.RunTimeout < 0 || s.Overlap < 0 {
			p.Addf(path, "timeouts and overlap must not be negative")
		}
	}
}
