// Package ldapsync pulls users, groups and memberships from LDAP directories
// (OpenLDAP, Active Directory, generic) into the store.
//
// It owns: the LDAP client side (dial, StartTLS, bind, RFC 2696 paged
// search, AD range retrieval, binary objectGUID), mapping entries to
// directory users and groups, correlation with existing users, the local
// group graph (nested membership with cycle detection), full and
// incremental runs with their cursors, the safety rules (a failed, partial
// or suspiciously small read aborts before anything is marked gone), the run
// report and the dry-run plan.
//
// It talks to the store only through the Store interface declared here.
package ldapsync
