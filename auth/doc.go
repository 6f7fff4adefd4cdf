// Package auth owns who is calling: static bearer tokens from config (plain
// or SHA-256 hashed, compared in constant time) with scopes, and the
// Principal carried in a request's context. OIDC sign-in adds principals of
// kind "oidc" here too.
package auth
