package scim

import (
	"bytes"
	"encoding/json"
	"net/mail"
	"strings"
)

// Schema URNs.
const (
	URNUser       = "urn:ietf:params:scim:schemas:core:2.0:User"
	URNGroup      = "urn:ietf:params:scim:schemas:core:2.0:Group"
	URNEnterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	URNDirsyncd   = "urn:dirsyncd:params:scim:schemas:extension:dirsyncd:2.0:User"
	URNListResp   = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	URNPatchOp    = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	URNSearchReq  = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
)

type kind int

const (
	kString kind = iota
	kBool
	kComplex
	kRef
)

// attrDef describes one attribute for input validation, PATCH paths and
// projection. It mirrors the schema definitions served at /Schemas.
type attrDef struct {
	Name      string
	Kind      kind
	Multi     bool
	Sub       []*attrDef
	ReadOnly  bool
	WriteOnly bool // never stored nor returned (password)
	CaseExact bool
}

func (a *attrDef) sub(name string) *attrDef {
	for _, s := range a.Sub {
		if strings.EqualFold(s.Name, name) {
			return s
		}
	}
	return nil
}

// schemaDef is one schema (core or extension) of a resource type.
type schemaDef struct {
	URN   string
	Attrs []*attrDef
}

func (s *schemaDef) attr(name string) *attrDef {
	for _, a := range s.Attrs {
		if strings.EqualFold(a.Name, name) {
			return a
		}
	}
	return nil
}

// resourceDef is a resource type: its core schema and its extensions.
type resourceDef struct {
	Name       string // "User" or "Group"
	Endpoint   string // "/Users"
	Core       *schemaDef
	Extensions []*schemaDef
}

func (r *resourceDef) extension(urn string) *schemaDef {
	for _, e := range r.Extensions {
		if strings.EqualFold(e.URN, urn) {
			return e
		}
	}
	return nil
}

// schemaFor returns the schema named by urn ("" = core).
func (r *resourceDef) schemaFor(urn string) *schemaDef {
	if urn == "" || strings.EqualFold(urn, r.Core.URN) {
		return r.Core
	}
	return r.extension(urn)
}

func str(name string) *attrDef      { return &attrDef{Name: name, Kind: kString} }
func strExact(name string) *attrDef { return &attrDef{Name: name, Kind: kString, CaseExact: true} }
func boolean(name string) *attrDef  { return &attrDef{Name: name, Kind: kBool} }
func readOnly(a *attrDef) *attrDef  { a.ReadOnly = true; return a }
func multiValued(name string, subs ...*attrDef) *attrDef {
	return &attrDef{Name: name, Kind: kComplex, Multi: true, Sub: subs}
}
func complexAttr(name string, subs ...*attrDef) *attrDef {
	return &attrDef{Name: name, Kind: kComplex, Sub: subs}
}

func plural(name string) *attrDef {
	return multiValued(name, str("value"), str("display"), str("type"), boolean("primary"))
}

var userDef = &resourceDef{
	Name: "User", Endpoint: "/Users",
	Core: &schemaDef{URN: URNUser, Attrs: []*attrDef{
		strExact("externalId"),
		str("userName"),
		complexAttr("name", str("formatted"), str("familyName"), str("givenName"), str("middleName"),
			str("honorificPrefix"), str("honorificSuffix")),
		str("displayName"), str("nickName"), {Name: "profileUrl", Kind: kRef}, str("title"), str("userType"),
		str("preferredLanguage"), str("locale"), str("timezone"), boolean("active"),
		{Name: "password", Kind: kString, WriteOnly: true},
		plural("emails"), plural("phoneNumbers"), plural("ims"), plural("photos"),
		multiValued("addresses", str("formatted"), str("streetAddress"), str("locality"), str("region"),
			str("postalCode"), str("country"), str("type"), boolean("primary")),
		readOnly(multiValued("groups", str("value"), &attrDef{Name: "$ref", Kind: kRef}, str("display"), str("type"))),
		plural("entitlements"), plural("roles"), plural("x509Certificates"),
	}},
	Extensions: []*schemaDef{
		{URN: URNEnterprise, Attrs: []*attrDef{
			str("employeeNumber"), str("costCenter"), str("organization"), str("division"), str("department"),
			complexAttr("manager", str("value"), &attrDef{Name: "$ref", Kind: kRef}, readOnly(str("displayName"))),
		}},
		{URN: URNDirsyncd, Attrs: []*attrDef{
			strExact("firmNumber"), str("userType"), str("usualRole"), str("location"),
			readOnly(multiValued("roles", str("service"), str("role"), str("firmNumber"), boolean("allOffices"), str("offices"))),
			readOnly(&attrDef{Name: "offices", Kind: kString, Multi: true}),
		}},
	},
}

var groupDef = &resourceDef{
	Name: "Group", Endpoint: "/Groups",
	Core: &schemaDef{URN: URNGroup, Attrs: []*attrDef{
		strExact("externalId"),
		str("displayName"),
		multiValued("members", strExact("value"), &attrDef{Name: "$ref", Kind: kRef}, str("display"), str("type")),
	}},
}

// normalizeResource validates a POST/PUT body against def and returns it
// with canonical attribute names and coerced values: extension attributes
// under their URN key, read-only and write-only (password) attributes
// dropped, unknown core attributes ignored (RFC 7643 §2.1: the service
// provider ignores what it does not define).
func normalizeResource(def *resourceDef, raw map[string]any) (map[string]any, error) {
	out := map[string]any{}
	for k, v := range raw {
		switch strings.ToLower(k) {
		case "schemas":
			if err := checkSchemas(def, v); err != nil {
				return nil, err
			}
			continue
		case "id", "meta":
			continue
		}
		if ext := def.extension(k); ext != nil {
			if v == nil {
				continue
			}
			m, ok := v.(map[string]any)
			if !ok {
				return nil, badRequest(TypeInvalidValue, "%s must be an object", ext.URN)
			}
			em, err := normalizeAttrs(ext, m)
			if err != nil {
				return nil, err
			}
			if len(em) > 0 {
				out[ext.URN] = em
			}
			continue
		}
		if strings.HasPrefix(strings.ToLower(k), "urn:") {
			return nil, badRequest(TypeInvalidSyntax, "unknown schema extension %q", k)
		}
		a := def.Core.attr(k)
		if a == nil || a.ReadOnly || a.WriteOnly {
			continue
		}
		cv, err := coerce(a, v)
		if err != nil {
			return nil, err
		}
		if cv != nil {
			out[a.Name] = cv
		}
	}
	return out, nil
}

func checkSchemas(def *resourceDef, v any) error {
	list, ok := v.([]any)
	if !ok {
		return badRequest(TypeInvalidSyntax, "schemas must be an array of URNs")
	}
	core := false
	for _, s := range list {
		u, ok := s.(string)
		if !ok {
			return badRequest(TypeInvalidSyntax, "schemas must be an array of URNs")
		}
		switch {
		case strings.EqualFold(u, def.Core.URN):
			core = true
		case def.extension(u) != nil:
		default:
			return badRequest(TypeInvalidSyntax, "unknown schema %q for %s", u, def.Name)
		}
	}
	if !core {
		return badRequest(TypeInvalidSyntax, "schemas must include %s", def.Core.URN)
	}
	return nil
}

func normalizeAttrs(s *schemaDef, m map[string]any) (map[string]any, error) {
	out := map[string]any{}
	for k, v := range m {
		a := s.attr(k)
		if a == nil || a.ReadOnly || a.WriteOnly {
			continue
		}
		cv, err := coerce(a, v)
		if err != nil {
			return nil, err
		}
		if cv != nil {
			out[a.Name] = cv
		}
	}
	return out, nil
}

// coerce checks v against a and returns it normalised; nil means
// "unassigned". Quirks accepted on purpose: Entra's "True"/"False" strings
// for booleans, a manager (or any complex attribute with a value
// sub-attribute) sent as a plain string, and a single object where an array
// is expected.
func coerce(a *attrDef, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	if a.Multi {
		list, ok := v.([]any)
		if !ok {
			list = []any{v}
		}
		one := *a
		one.Multi = false
		out := make([]any, 0, len(list))
		for _, e := range list {
			ce, err := coerce(&one, e)
			if err != nil {
				return nil, err
			}
			if ce != nil {
				out = append(out, ce)
			}
		}
		if len(out) == 0 {
			return nil, nil
		}
		return out, nil
	}
	switch a.Kind {
	case kString, kRef:
		s, ok := v.(string)
		if !ok {
			return nil, badRequest(TypeInvalidValue, "%s must be a string", a.Name)
		}
		return s, nil
	case kBool:
		switch b := v.(type) {
		case bool:
			return b, nil
		case string:
			switch strings.ToLower(strings.TrimSpace(b)) {
			case "true":
				return true, nil
			case "false":
				return false, nil
			}
		}
		return nil, badRequest(TypeInvalidValue, "%s must be a boolean", a.Name)
	case kComplex:
		switch m := v.(type) {
		case map[string]any:
			out := map[string]any{}
			for k, sv := range m {
				sa := a.sub(k)
				if sa == nil || sa.ReadOnly || sa.WriteOnly {
					continue
				}
				cv, err := coerce(sa, sv)
				if err != nil {
					return nil, err
				}
				if cv != nil {
					out[sa.Name] = cv
				}
			}
			if len(out) == 0 {
				return nil, nil
			}
			return out, nil
		case string:
			if a.sub("value") != nil {
				if m == "" {
					return nil, nil
				}
				return map[string]any{"value": m}, nil
			}
		}
		return nil, badRequest(TypeInvalidValue, "%s must be an object", a.Name)
	}
	return nil, badRequest(TypeInvalidValue, "%s has an unsupported type", a.Name)
}

// decodeJSON decodes a request body into a generic value, numbers kept as
// json.Number.
func decodeJSON(b []byte, v any) error {
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return badRequest(TypeInvalidSyntax, "malformed JSON: %v", err)
	}
	if d.More() {
		return badRequest(TypeInvalidSyntax, "malformed JSON: trailing data")
	}
	return nil
}

// decodeBody is decodeJSON for a request body: a NUL character anywhere in
// it (JSON's \u0000, in a key or a value) is refused, as PostgreSQL text
// cannot hold it (a 500 otherwise).
func decodeBody(b []byte, v any) error {
	if err := decodeJSON(b, v); err != nil {
		return err
	}
	if bytes.Contains(b, []byte(`\u0000`)) && hasNUL(reflectValue(v)) {
		return badRequest(TypeInvalidValue, "a string contains a NUL character")
	}
	return nil
}

// reflectValue dereferences the pointer decodeJSON decoded into.
func reflectValue(v any) any {
	switch p := v.(type) {
	case *map[string]any:
		return *p
	case *any:
		return *p
	}
	return v
}

func hasNUL(v any) bool {
	switch x := v.(type) {
	case string:
		return strings.IndexByte(x, 0) >= 0
	case map[string]any:
		for k, e := range x {
			if strings.IndexByte(k, 0) >= 0 || hasNUL(e) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if hasNUL(e) {
				return true
			}
		}
	}
	return false
}

// maxKeyLen bounds the attributes the store keeps in unique or lookup
// indexes (userName, externalId, e-mail values, a group's displayName):
// PostgreSQL refuses a btree entry over 2704 bytes, which would be a 500.
const maxKeyLen = 1024

func checkKeyLen(name, v string) error {
	if len(v) > maxKeyLen {
		return badRequest(TypeInvalidValue, "%s is longer than %d bytes", name, maxKeyLen)
	}
	return nil
}

func validEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && a.Name == ""
}
