// Package directory holds dirsyncd's domain types: users and their source
// links, groups, firms, offices, firm memberships, grants with office scope
// and provenance, and runs. It does no I/O; every other package speaks in
// these types (see ../shared/DOMAIN.md for the business they model).
package directory
