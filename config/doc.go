// Package config loads dirsyncd's YAML configuration: Load(path) reads the
// file strictly (unknown keys are problems), resolves every Secret
// (value / env:NAME / file:PATH, found by reflection in every section),
// applies defaults, and validates, reporting every problem at once in a
// *ValidationError (a Problems list). `dirsyncd check-config` prints them
// and exits 2.
//
// The core sections (env, log, store, server, tokens, scheduler) live in
// core.go. Each feature has its own section file (scim.go, ldap.go, cwa.go,
// mapping.go, reconcile.go, caseaccess.go) with defaults() and
// validate(*Problems), called by Parse. Every option is documented in
// configs/dirsyncd.example.yaml.
package config
