package scim

import (
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dirsyncd/dirsyncd/store"
	filter "github.com/scim2/filter-parser/v2"
)

// fieldKind is the type of a queryable attribute.
type fieldKind int

const (
	fString fieldKind = iota
	fBool
	fTime
)

type fieldInfo struct {
	Field store.Field
	Kind  fieldKind
	// ValuePath is set when the SCIM attribute is multi-valued and the
	// comparison must run on one of its values (emails, members).
	ValuePath string
}

// queryable attributes, keyed by lower-cased "[urn:]attr[.sub]".
var userFields = map[string]fieldInfo{
	"id":                               {Field: "id"},
	"externalid":                       {Field: "externalId"},
	"username":                         {Field: "userName"},
	"displayname":                      {Field: "displayName"},
	"name.givenname":                   {Field: "givenName"},
	"name.familyname":                  {Field: "familyName"},
	"usertype":                         {Field: "userType"},
	"active":                           {Field: "active", Kind: fBool},
	"meta.created":                     {Field: "meta.created", Kind: fTime},
	"meta.lastmodified":                {Field: "meta.lastModified", Kind: fTime},
	"emails":                           {Field: "value", ValuePath: "emails"},
	"emails.value":                     {Field: "value", ValuePath: "emails"},
	"emails.type":                      {Field: "type", ValuePath: "emails"},
	"emails.primary":                   {Field: "primary", Kind: fBool, ValuePath: "emails"},
	lower(URNDirsyncd) + ":firmnumber": {Field: "firmNumber"},
	lower(URNDirsyncd) + ":usertype":   {Field: "userType"},
}

var groupFields = map[string]fieldInfo{
	"id":                {Field: "id"},
	"externalid":        {Field: "externalId"},
	"displayname":       {Field: "displayName"},
	"meta.created":      {Field: "meta.created", Kind: fTime},
	"meta.lastmodified": {Field: "meta.lastModified", Kind: fTime},
	"members":           {Field: "value", ValuePath: "members"},
	"members.value":     {Field: "value", ValuePath: "members"},
}

func lower(s string) string { return strings.ToLower(s) }

func fieldsFor(def *resourceDef) map[string]fieldInfo {
	if def == groupDef {
		return groupFields
	}
	return userFields
}

var subAfterValuePath = regexp.MustCompile(`^(?i)([a-z][a-z0-9_-]*)\[([^\[\]]+)\]\.([a-z][a-z0-9_-]*)\s+((?:eq|ne|co|sw|ew|gt|ge|lt|le)\s+.+|pr)$`)

// simpleFilter matches the filters identity providers send on every
// lookup (`userName eq "…"`, `externalId eq "…"`, `name.familyName co "…"`).
var simpleFilter = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9_-]*)(?:\.([A-Za-z][A-Za-z0-9_-]*))? ([A-Za-z]{2}) "([^"\\]*)"$`)

// fastFilter parses a simple comparison without the general filter
// parser, which costs about a quarter of a lookup's time. Anything else
// (and any operator it does not know) goes to the general parser;
// FuzzFilter checks that both agree.
func fastFilter(raw string) (filter.Expression, bool) {
	m := simpleFilter.FindStringSubmatch(raw)
	if m == nil || strings.ContainsFunc(m[4], func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, false // control characters: the general parser decides
	}
	op := filter.CompareOperator(strings.ToLower(m[3]))
	switch op {
	case filter.EQ, filter.NE, filter.CO, filter.SW, filter.EW, filter.GT, filter.GE, filter.LT, filter.LE:
	default:
		return nil, false
	}
	switch strings.ToLower(m[1]) {
	case "and", "or", "not":
		return nil, false
	}
	p := filter.AttributePath{AttributeName: m[1]}
	if m[2] != "" {
		sub := m[2]
		p.SubAttribute = &sub
	}
	return &filter.AttributeExpression{AttributePath: p, Operator: op, CompareValue: m[4]}, true
}

// maxFilterLen bounds the filter text; longer filters are refused before parsing.
const maxFilterLen = 4096

// parseFilter parses a SCIM filter and translates it into a store.Filter.
// Every failure is a 400 invalidFilter.
func parseFilter(def *resourceDef, raw string) (store.Filter, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, nil
	}
	if len(raw) > maxFilterLen {
		return nil, badRequest(TypeInvalidFilter, "filter longer than %d bytes", maxFilterLen)
	}
	if !utf8.ValidString(raw) || strings.IndexByte(raw, 0) >= 0 {
		// no stored value matches it (and PostgreSQL refuses to compare it)
		return nil, badRequest(TypeInvalidFilter, "filter is not valid UTF-8 text")
	}
	if expr, ok := fastFilter(raw); ok {
		return translate(def, expr, "", 0)
	}
	expr, err := filter.ParseFilter([]byte(raw))
	if err != nil {
		// Entra looks users up with emails[type eq "work"].value eq "…",
		// outside RFC 7644's filter grammar; read it as
		// emails[type eq "work" and value eq "…"].
		m := subAfterValuePath.FindStringSubmatch(raw)
		if m == nil {
			return nil, badRequest(TypeInvalidFilter, "filter does not parse")
		}
		vp, err1 := filter.ParseFilter([]byte(m[1] + "[" + m[2] + "]"))
		cmp, err2 := filter.ParseFilter([]byte(m[3] + " " + m[4]))
		v, ok := vp.(*filter.ValuePath)
		if err1 != nil || err2 != nil || !ok {
			return nil, badRequest(TypeInvalidFilter, "filter does not parse")
		}
		expr = &filter.ValuePath{AttributePath: v.AttributePath, ValueFilter: &filter.LogicalExpression{Left: v.ValueFilter, Right: cmp, Operator: filter.AND}}
	}
	return translate(def, expr, "", 0)
}

const maxFilterDepth = 64

// translate turns a parsed expression into a store.Filter. inVP names the
// multi-valued attribute when translating inside a value path.
func translate(def *resourceDef, e filter.Expression, inVP string, depth int) (store.Filter, error) {
	if depth > maxFilterDepth {
		return nil, badRequest(TypeInvalidFilter, "filter nested too deeply")
	}
	switch x := e.(type) {
	case *filter.LogicalExpression:
		l, err := translate(def, x.Left, inVP, depth+1)
		if err != nil {
			return nil, err
		}
		r, err := translate(def, x.Right, inVP, depth+1)
		if err != nil {
			return nil, err
		}
		if strings.EqualFold(string(x.Operator), "or") {
			return store.Or{Left: l, Right: r}, nil
		}
		return store.And{Left: l, Right: r}, nil
	case *filter.NotExpression:
		f, err := translate(def, x.Expression, inVP, depth+1)
		if err != nil {
			return nil, err
		}
		return store.Not{F: f}, nil
	case *filter.ValuePath:
		if inVP != "" {
			return nil, badRequest(TypeInvalidFilter, "nested value paths are not allowed")
		}
		if x.AttributePath.SubAttribute != nil {
			return nil, badRequest(TypeInvalidFilter, "value path on a sub-attribute")
		}
		key := pathKey(def, x.AttributePath)
		fi, ok := fieldsFor(def)[key]
		if !ok || fi.ValuePath == "" {
			return nil, badRequest(TypeInvalidFilter, "%s is not a filterable multi-valued attribute", x.AttributePath.AttributeName)
		}
		inner, err := translate(def, x.ValueFilter, fi.ValuePath, depth+1)
		if err != nil {
			return nil, err
		}
		return store.ValuePath{Attr: fi.ValuePath, F: inner}, nil
	case *filter.AttributeExpression:
		return translateCmp(def, x, inVP)
	}
	return nil, badRequest(TypeInvalidFilter, "unsupported filter expression")
}

func pathKey(def *resourceDef, p filter.AttributePath) string {
	k := strings.ToLower(p.AttributeName)
	if p.SubAttribute != nil {
		k += "." + strings.ToLower(*p.SubAttribute)
	}
	if uri := p.URI(); uri != "" && !strings.EqualFold(uri, def.Core.URN) {
		k = strings.ToLower(uri) + ":" + k
	}
	return k
}

func translateCmp(def *resourceDef, x *filter.AttributeExpression, inVP string) (store.Filter, error) {
	var fi fieldInfo
	if inVP != "" {
		// inside emails[...] / members[...]: sub-attribute names.
		k := inVP + "." + strings.ToLower(x.AttributePath.AttributeName)
		if x.AttributePath.SubAttribute != nil || x.AttributePath.URIPrefix != nil {
			return nil, badRequest(TypeInvalidFilter, "unexpected path inside %s[...]", inVP)
		}
		var ok bool
		if fi, ok = fieldsFor(def)[k]; !ok {
			return nil, badRequest(TypeInvalidFilter, "%s is not filterable", k)
		}
		fi.ValuePath = ""
	} else {
		var ok bool
		if fi, ok = fieldsFor(def)[pathKey(def, x.AttributePath)]; !ok {
			return nil, badRequest(TypeInvalidFilter, "%s is not filterable", x.AttributePath.String())
		}
	}
	op := store.Op(strings.ToLower(string(x.Operator)))
	c := store.Cmp{Field: fi.Field, Op: op}
	if op != store.OpPr {
		v, err := compareValue(fi, op, x.CompareValue)
		if err != nil {
			return nil, err
		}
		c.Value = v
	}
	if fi.ValuePath != "" {
		return store.ValuePath{Attr: fi.ValuePath, F: c}, nil
	}
	return c, nil
}

func compareValue(fi fieldInfo, op store.Op, v any) (any, error) {
	switch fi.Kind {
	case fBool:
		b, ok := v.(bool)
		if !ok {
			return nil, badRequest(TypeInvalidFilter, "%s compares with true or false", fi.Field)
		}
		if op != store.OpEq && op != store.OpNe {
			return nil, badRequest(TypeInvalidFilter, "operator %s does not apply to boolean %s", op, fi.Field)
		}
		return b, nil
	case fTime:
		s, ok := v.(string)
		if !ok {
			return nil, badRequest(TypeInvalidFilter, "%s compares with a date-time string", fi.Field)
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, badRequest(TypeInvalidFilter, "%s: %q is not an RFC 3339 date-time", fi.Field, s)
		}
		switch op {
		case store.OpCo, store.OpSw, store.OpEw:
			return nil, badRequest(TypeInvalidFilter, "operator %s does not apply to date-time %s", op, fi.Field)
		}
		return t.UTC(), nil
	default:
		s, ok := v.(string)
		if !ok {
			return nil, badRequest(TypeInvalidFilter, "%s compares with a string", fi.Field)
		}
		switch op {
		case store.OpEq, store.OpNe, store.OpCo, store.OpSw, store.OpEw, store.OpGt, store.OpGe, store.OpLt, store.OpLe:
			return s, nil
		}
		return nil, badRequest(TypeInvalidFilter, "unknown operator %q", op)
	}
}

// sortField maps sortBy to a store field ("" when sortBy is empty).
func sortField(def *resourceDef, sortBy string) (store.Field, error) {
	if sortBy == "" {
		return "", nil
	}
	p, err := filter.ParseAttrPath([]byte(sortBy))
	if err != nil {
		return "", badRequest(TypeInvalidValue, "sortBy %q is not an attribute path", sortBy)
	}
	fi, ok := fieldsFor(def)[pathKey(def, p)]
	if !ok {
		return "", badRequest(TypeInvalidValue, "cannot sort by %q", sortBy)
	}
	if fi.ValuePath != "" {
		if def == userDef && fi.Field == "value" {
			return "email", nil // the primary e-mail
		}
		return "", badRequest(TypeInvalidValue, "cannot sort by %q", sortBy)
	}
	return fi.Field, nil
}

// matchElem evaluates a value filter on one element of a multi-valued
// attribute of a single resource (PATCH paths such as
// emails[type eq "work"]); it never runs on a query.
func matchElem(a *attrDef, e filter.Expression, elem map[string]any, depth int) (bool, error) {
	if depth > maxFilterDepth {
		return false, badRequest(TypeInvalidFilter, "filter nested too deeply")
	}
	switch x := e.(type) {
	case *filter.LogicalExpression:
		l, err := matchElem(a, x.Left, elem, depth+1)
		if err != nil {
			return false, err
		}
		r, err := matchElem(a, x.Right, elem, depth+1)
		if err != nil {
			return false, err
		}
		if strings.EqualFold(string(x.Operator), "or") {
			return l || r, nil
		}
		return l && r, nil
	case *filter.NotExpression:
		m, err := matchElem(a, x.Expression, elem, depth+1)
		return !m, err
	case *filter.AttributeExpression:
		if x.AttributePath.SubAttribute != nil {
			return false, badRequest(TypeInvalidFilter, "unexpected sub-attribute in value filter")
		}
		sa := a.sub(x.AttributePath.AttributeName)
		if sa == nil {
			return false, badRequest(TypeInvalidFilter, "%s has no sub-attribute %q", a.Name, x.AttributePath.AttributeName)
		}
		return cmpValue(sa, strings.ToLower(string(x.Operator)), elem[sa.Name], x.CompareValue)
	}
	return false, badRequest(TypeInvalidFilter, "unsupported value filter")
}

func cmpValue(a *attrDef, op string, have, want any) (bool, error) {
	if op == "pr" {
		if have == nil {
			return false, nil
		}
		if s, ok := have.(string); ok {
			return s != "", nil
		}
		return true, nil
	}
	if a.Kind == kBool {
		wb, ok := want.(bool)
		if !ok {
			return false, badRequest(TypeInvalidFilter, "%s compares with true or false", a.Name)
		}
		hb, _ := have.(bool)
		switch op {
		case "eq":
			return hb == wb, nil
		case "ne":
			return hb != wb, nil
		}
		return false, badRequest(TypeInvalidFilter, "operator %s does not apply to boolean %s", op, a.Name)
	}
	ws, ok := want.(string)
	if !ok {
		return false, badRequest(TypeInvalidFilter, "%s compares with a string", a.Name)
	}
	hs, _ := have.(string)
	if !a.CaseExact {
		hs, ws = strings.ToLower(hs), strings.ToLower(ws)
	}
	switch op {
	case "eq":
		return hs == ws, nil
	case "ne":
		return hs != ws, nil
	case "co":
		return strings.Contains(hs, ws), nil
	case "sw":
		return strings.HasPrefix(hs, ws), nil
	case "ew":
		return strings.HasSuffix(hs, ws), nil
	case "gt":
		return hs > ws, nil
	case "ge":
		return hs >= ws, nil
	case "lt":
		return hs < ws, nil
	case "le":
		return hs <= ws, nil
	}
	return false, badRequest(TypeInvalidFilter, "unknown operator %q", op)
}
