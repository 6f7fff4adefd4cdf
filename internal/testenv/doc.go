// Package testenv gives tests the real services `make test` starts:
// a PostgreSQL cluster (DIRSYNCD_TEST_PG_DSN, a superuser DSN; each test gets
// its own fresh database) and OpenLDAP slapd (started per test by Slapd).
//
// When a service is missing, a test skips locally, but when CI is set it
// fails: CI never skips silently.
package testenv
