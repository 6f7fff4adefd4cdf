package store

// Filter is a query predicate over users or groups, translated to SQL by
// the backends (never evaluated in memory). The scim package translates SCIM
// filters into these values.
type Filter interface{ isFilter() }

// Field names a queryable attribute. Users: id, userName, externalId,
// displayName, givenName, familyName, email (primary), userType, firmNumber,
// active, meta.created, meta.lastModified, and inside ValuePath "emails":
// value, type, primary. Groups: id, displayName, externalId,
// meta.created, meta.lastModified, and inside ValuePath "members": value.
type Field string

// Op is a comparison operator (SCIM's: eq ne co sw ew gt ge lt le pr).
type Op string

// Operators.
const (
	OpEq Op = "eq"
	OpNe Op = "ne"
	OpCo Op = "co"
	OpSw Op = "sw"
	OpEw Op = "ew"
	OpGt Op = "gt"
	OpGe Op = "ge"
	OpLt Op = "lt"
	OpLe Op = "le"
	OpPr Op = "pr"
)

// Cmp compares a field with a value (string, bool, int64, float64 or
// time.Time; nil for OpPr). String comparisons on userName, email, emails.value
// and displayName are case-insensitive; id and externalId are case-exact, as
// RFC 7643 says.
type Cmp struct {
	Field Field
	Op    Op
	Value any
}

// And, Or and Not combine filters.
type And struct{ Left, Right Filter }

// Or is a disjunction.
type Or struct{ Left, Right Filter }

// Not negates.
type Not struct{ F Filter }

// ValuePath filters on a multi-valued attribute: Attr is "emails" (users) or
// "members" (groups); F's Cmp fields are the sub-attributes (value, type,
// primary). It matches when some value satisfies F.
type ValuePath struct {
	Attr string
	F    Filter
}

func (Cmp) isFilter()       {}
func (And) isFilter()       {}
func (Or) isFilter()        {}
func (Not) isFilter()       {}
func (ValuePath) isFilter() {}
