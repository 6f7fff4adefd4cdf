// Package ldaptarget is the LDAP implementation of reconcile's
// RoleGroupDirectory: one groupOfNames per role, written with add/delete
// value modifies (never a whole member-list replace). groupOfNames needs at
// least one member, so an emptied group keeps its own DN as a placeholder
// member, which Members never reports.
package ldaptarget
