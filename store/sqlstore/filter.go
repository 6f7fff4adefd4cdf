package sqlstore

import (
	"fmt"
	"strings"
	"time"

	"github.com/dirsyncd/dirsyncd/store"
)

type valueKind int

const (
	kString valueKind = iota
	kBool
	kTime
)

// column describes how a filter field maps to SQL.
type column struct {
	expr string    // SQL expression
	kind valueKind // value type
	ci   bool      // case-insensitive: expr is a lowercased column, values are lowercased
	// asciiCI: case-insensitive for a column without a Go-lowercased copy:
	// expr is LOWER(column), and values are lowercased in ASCII only, as
	// LOWER does on both backends (SQLite's built-in LOWER, PostgreSQL's
	// under COLLATE "C"), so that a non-ASCII spelling still matches itself.
	asciiCI bool
	eq      string // extra predicate for eq, letting a partial unique index serve it
}

// lowerASCII lowercases the ASCII letters of s, as SQL LOWER does on a
// COLLATE "C" (PostgreSQL) or any (SQLite) column.
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

var userColumns = map[store.Field]column{
	"id":       {expr: "u.id"},
	"userName": {expr: "u.user_name_lc", ci: true},
	// eq: an absent externalId ("") equals nothing; the predicate lets the
	// partial users_external_id_live_idx serve the lookup (PostgreSQL 0054).
	"externalId":  {expr: "u.external_id", eq: " AND u.external_id <> ''"},
	"displayName": {expr: "u.display_name_lc", ci: true},
	// RFC 7643 §4.1: name.givenName, name.familyName and userType are
	// caseExact false.
	"givenName":         {expr: "LOWER(u.given_name)", asciiCI: true},
	"familyName":        {expr: "LOWER(u.family_name)", asciiCI: true},
	"email":             {expr: "u.email_lc", ci: true},
	"userType":          {expr: "LOWER(u.user_type)", asciiCI: true},
	"firmNumber":        {expr: "u.firm_number"},
	"active":            {expr: "u.active", kind: kBool},
	"meta.created":      {expr: "u.created_at", kind: kTime},
	"meta.lastModified": {expr: "u.updated_at", kind: kTime},
}

var emailColumns = map[store.Field]column{
	"value":   {expr: "e.value_lc", ci: true},
	"type":    {expr: "LOWER(e.type)", asciiCI: true}, // caseExact false (RFC 7643 §4.1.2)
	"primary": {expr: "e.is_primary", kind: kBool},
}

var groupColumns = map[store.Field]column{
	"id":                {expr: "g.id"},
	"displayName":       {expr: "g.display_name_lc", ci: true},
	"externalId":        {expr: "g.external_id"},
	"meta.created":      {expr: "g.created_at", kind: kTime},
	"meta.lastModified": {expr: "g.updated_at", kind: kTime},
}

var memberColumns = map[store.Field]column{
	"value": {expr: "m.user_id"},
}

// valuePaths maps a multi-valued attribute to its sub-query.
type valuePath struct {
	exists string // EXISTS sub-query prefix; the predicate is appended
	cols   map[store.Field]column
}

var userPaths = map[string]valuePath{
	"emails": {exists: "EXISTS (SELECT 1 FROM user_emails e WHERE e.user_id = u.id AND ", cols: emailColumns},
}

var groupPaths = map[string]valuePath{
	"members": {exists: "EXISTS (SELECT 1 FROM group_members m WHERE m.group_id = g.id AND ", cols: memberColumns},
}

// where builds a parameterised SQL predicate.
type where struct {
	d    *Dialect
	args []any
}

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", store.ErrInvalidFilter, fmt.Sprintf(format, a...))
}

func (w *where) filter(f store.Filter, cols map[store.Field]column, paths map[string]valuePath) (string, error) {
	switch f := f.(type) {
	case store.Cmp:
		return w.cmp(f, cols)
	case *store.Cmp:
		return w.cmp(*f, cols)
	case store.And:
		return w.bin("AND", f.Left, f.Right, cols, paths)
	case store.Or:
		return w.bin("OR", f.Left, f.Right, cols, paths)
	case store.Not:
		s, err := w.filter(f.F, cols, paths)
		if err != nil {
			return "", err
		}
		return "NOT (" + s + ")", nil
	case store.ValuePath:
		vp, ok := paths[f.Attr]
		if !ok {
			return "", invalid("unknown multi-valued attribute %q", f.Attr)
		}
		s, err := w.filter(f.F, vp.cols, nil)
		if err != nil {
			return "", err
		}
		return vp.exists + s + ")", nil
	case nil:
		return "", invalid("empty filter")
	}
	return "", invalid("unsupported filter %T", f)
}

func (w *where) bin(op string, l, r store.Filter, cols map[store.Field]column, paths map[string]valuePath) (string, error) {
	a, err := w.filter(l, cols, paths)
	if err != nil {
		return "", err
	}
	b, err := w.filter(r, cols, paths)
	if err != nil {
		return "", err
	}
	return "(" + a + " " + op + " " + b + ")", nil
}

func (w *where) cmp(c store.Cmp, cols map[store.Field]column) (string, error) {
	col, ok := cols[c.Field]
	if !ok {
		return "", invalid("unknown attribute %q", c.Field)
	}
	if c.Op == store.OpPr {
		if col.kind == kString {
			return col.expr + " <> ''", nil
		}
		return col.expr + " IS NOT NULL", nil
	}
	var arg any
	switch col.kind {
	case kBool:
		b, ok := c.Value.(bool)
		if !ok {
			return "", invalid("%s needs a boolean, got %T", c.Field, c.Value)
		}
		if c.Op != store.OpEq && c.Op != store.OpNe {
			return "", invalid("operator %s does not apply to boolean %s", c.Op, c.Field)
		}
		arg = b
	case kTime:
		var t time.Time
		switch v := c.Value.(type) {
		case time.Time:
			t = v
		case string:
			p, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return "", invalid("%s needs a date-time: %v", c.Field, err)
			}
			t = p
		default:
			return "", invalid("%s needs a date-time, got %T", c.Field, c.Value)
		}
		switch c.Op {
		case store.OpCo, store.OpSw, store.OpEw:
			return "", invalid("operator %s does not apply to date-time %s", c.Op, c.Field)
		}
		arg = w.d.Time(t.UTC().Truncate(time.Microsecond))
	default:
		var s string
		switch v := c.Value.(type) {
		case string:
			s = v
		case fmt.Stringer:
			s = v.String()
		case int64, int, float64, bool:
			s = fmt.Sprint(v)
		default:
			return "", invalid("%s needs a string, got %T", c.Field, c.Value)
		}
		if col.ci {
			s = strings.ToLower(s)
		} else if col.asciiCI {
			s = lowerASCII(s)
		}
		switch c.Op {
		case store.OpCo:
			w.args = append(w.args, "%"+escapeLike(s)+"%")
			return col.expr + ` LIKE ? ESCAPE '\'`, nil
		case store.OpSw:
			w.args = append(w.args, escapeLike(s)+"%")
			return col.expr + ` LIKE ? ESCAPE '\'`, nil
		case store.OpEw:
			w.args = append(w.args, "%"+escapeLike(s))
			return col.expr + ` LIKE ? ESCAPE '\'`, nil
		}
		arg = s
	}
	var op string
	switch c.Op {
	case store.OpEq:
		op = "="
	case store.OpNe:
		op = "<>"
	case store.OpGt:
		op = ">"
	case store.OpGe:
		op = ">="
	case store.OpLt:
		op = "<"
	case store.OpLe:
		op = "<="
	default:
		return "", invalid("unknown operator %q", c.Op)
	}
	w.args = append(w.args, arg)
	if c.Op == store.OpEq && col.eq != "" {
		return "(" + col.expr + " = ?" + col.eq + ")", nil
	}
	return col.expr + " " + op + " ?", nil
}

// orderBy returns the ORDER BY clause: the sort field, then id.
func orderBy(sortBy store.Field, desc bool, cols map[store.Field]column, idExpr string) (string, error) {
	dir := " ASC"
	if desc {
		dir = " DESC"
	}
	if sortBy == "" || sortBy == "id" {
		return " ORDER BY " + idExpr + dir, nil
	}
	col, ok := cols[sortBy]
	if !ok {
		return "", invalid("cannot sort by %q", sortBy)
	}
	return " ORDER BY " + col.expr + dir + ", " + idExpr + dir, nil
}
