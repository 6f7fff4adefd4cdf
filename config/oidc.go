package config

import (
	"net/url"
	"time"
)

// Defaults of the oidc section.
const (
	DefaultOIDCUserClaim    = "email"
	DefaultOIDCSupportClaim = "groups"
	DefaultSessionTTL       = 8 * time.Hour
)

// OIDCConfig is the `oidc` section: people sign in to the admin API and the
// report pages with an OpenID Connect provider (Entra ID, Okta, ...).
// Bearer tokens (ID or JWT access tokens) are accepted when their issuer is
// Issuer and their audience Audience; browsers sign in with the
// authorization code flow and PKCE at /ui/login. Empty Issuer turns OIDC
// off (only the static tokens authenticate).
type OIDCConfig struct {
	// Issuer is the provider's issuer URL (discovery at
	// Issuer/.well-known/openid-configuration).
	Issuer string `yaml:"issuer"`
	// ClientID is the client registered for dirsyncd; it is also the
	// audience bearer tokens must carry unless Audience is set.
	ClientID string `yaml:"clientID"`
	// ClientSecret, when the provider registered dirsyncd as a confidential
	// client (PKCE is used either way).
	ClientSecret Secret `yaml:"clientSecret"`
	// Audience bearer tokens must carry (default ClientID).
	Audience string `yaml:"audience"`
	// JWKSURL overrides the discovery document's jwks_uri.
	JWKSURL string `yaml:"jwksURL"`
	// UserClaim names the claim that identifies the dirsyncd user: "email"
	// (default; matched to the user's e-mail) or any other claim such as
	// "preferred_username" (matched to the userName), case-insensitive.
	UserClaim string `yaml:"userClaim"`
	// SupportClaim (default "groups") and SupportValues: an identity whose
	// SupportClaim holds one of SupportValues is the agency's support staff
	// (every firm, admin roles included). No values: no OIDC support users.
	SupportClaim  string   `yaml:"supportClaim"`
	SupportValues []string `yaml:"supportValues"`
	// SessionKey signs the browser session and CSRF tokens (at least 32
	// bytes; env: or file:). Required when Issuer is set.
	SessionKey Secret `yaml:"sessionKey"`
	// SessionTTL is how long a browser session lasts (default 8h).
	SessionTTL time.Duration `yaml:"sessionTTL"`
	// InsecureCookies drops the Secure flag of the session cookie: only
	// allowed with env: development (plain-http local runs).
	InsecureCookies bool `yaml:"insecureCookies"`
	// DevIssuer starts a local sign-in issuer inside `serve` (a page where
	// you type any e-mail, optionally as support staff) and points Issuer,
	// ClientID and SessionKey at it, so `make run` shows the report pages
	// with no identity provider. Only allowed with env: development, and
	// not together with Issuer.
	DevIssuer bool `yaml:"devIssuer"`
}

// Enabled reports whether OIDC sign-in is configured.
func (c *OIDCConfig) Enabled() bool { return c.Issuer != "" }

// TokenAudience is the audience bearer tokens must carry.
func (c *OIDCConfig) TokenAudience() string {
	if c.Audience != "" {
		return c.Audience
	}
	return c.ClientID
}

func (c *OIDCConfig) defaults() {
	if c.UserClaim == "" {
		c.UserClaim = DefaultOIDCUserClaim
	}
	if c.SupportClaim == "" {
		c.SupportClaim = DefaultOIDCSupportClaim
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = DefaultSessionTTL
	}
}

func (c *OIDCConfig) validate(p *Problems, env string) {
	if c.DevIssuer {
		if env != EnvDevelopment {
			p.Addf("oidc.devIssuer", "is allowed only with env: development")
		}
		if c.Issuer != "" {
			p.Addf("oidc.devIssuer", "cannot be combined with oidc.issuer")
		}
		return
	}
	if !c.Enabled() {
		return
	}
	if u, err := url.Parse(c.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		p.Addf("oidc.issuer", "must be an absolute http(s) URL, not %q", c.Issuer)
	} else if u.Scheme == "http" && env != EnvDevelopment {
		p.Addf("oidc.issuer", "must use https outside env: development")
	}
	if c.JWKSURL != "" {
		if u, err := url.Parse(c.JWKSURL); err != nil || u.Host == "" {
			p.Addf("oidc.jwksURL", "must be an absolute URL, not %q", c.JWKSURL)
		}
	}
	if c.ClientID == "" {
		p.Addf("oidc.clientID", "is required when oidc.issuer is set")
	}
	if len(c.SessionKey.Value()) < 32 {
		p.Addf("oidc.sessionKey", "is required when oidc.issuer is set and must be at least 32 bytes")
	}
	if c.SessionTTL < time.Minute {
		p.Addf("oidc.sessionTTL", "must be at least 1m")
	}
	if c.InsecureCookies && env != EnvDevelopment {
		p.Addf("oidc.insecureCookies", "is allowed only with env: development")
	}
}
