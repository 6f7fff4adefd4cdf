package sqlstore

// The SCIM server (package scim) lists only the groups SCIM clients
// provisioned (source "scim:<client>"): LDAP and other sources' groups are
// not SCIM resources. It narrows GET /Groups with a filter on the group's
// source ("source sw \"scim:\""), which the store runs in SQL like every
// other filter field. SCIM clients cannot name this field themselves: the
// SCIM Group schema has no "source" attribute, so their filters never
// reach it.
func init() {
	groupColumns["source"] = column{expr: "g.source"}
}
