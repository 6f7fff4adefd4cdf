// Package webauth is dirsyncd's OpenID Connect side: it verifies bearer
// tokens from the configured issuer (signature against the issuer's JWKS,
// issuer, audience, expiry; github.com/coreos/go-oidc) and runs the
// browser sign-in (authorization code flow with PKCE S256 and a nonce,
// golang.org/x/oauth2). It answers with an Identity: the subject, the value
// of the configured user claim (e-mail by default) and whether the
// identity is the agency's support staff (a value of the support claim).
// With the e-mail as the user claim, an e-mail the provider marks as not
// verified (email_verified false, as a boolean or the string some
// providers send) is refused; an absent email_verified is accepted.
//
// Mapping the identity to a dirsyncd user, sessions, CSRF and permissions
// are the server's business (package server). The provider's discovery
// document is fetched lazily on first use and again after a failure, so
// a provider that is down when dirsyncd starts does not stop the daemon;
// requests fail with 401 meanwhile and the error is logged. The issuer's
// keys are fetched on first use and again at most every 30 s when a token's
// signature fails against them (keys.go): go-oidc's own key set fetched
// them for every such token, so forged tokens could make dirsyncd call the
// provider once each.
//
// Package oidctest is a local issuer for tests, with keys generated in the
// test.
package webauth
