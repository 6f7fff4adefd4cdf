// Package config loads dirsyncd's YAML configuration: read the file, expand
// secrets (value / env: / file:), apply defaults, and validate, reporting
// every problem at once. Each section lives in its own file and validates
// itself into a shared *Problems list.
package config
