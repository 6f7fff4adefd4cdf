package scim

import (
	"encoding/json"
	"reflect"
	"regexp"
	"sort"
	"strings"

	filter "github.com/scim2/filter-parser/v2"
)

// patchOp is one operation of a PatchOp request, op lower-cased (Entra
// sends "Replace", "Add", "Remove").
type patchOp struct {
	Op       string
	Path     string
	Value    any
	HasValue bool
}

// maxPatchOps bounds the operations of one PATCH request.
const maxPatchOps = 1000

// parsePatch decodes and checks a PatchOp body.
func parsePatch(body []byte) ([]patchOp, error) {
	var req map[string]any
	if err := decodeBody(body, &req); err != nil {
		return nil, err
	}
	if req == nil {
		return nil, badRequest(TypeInvalidSyntax, "body must be a PatchOp object")
	}
	var rawOps any
	var schemas any
	for k, v := range req {
		switch strings.ToLower(k) {
		case "schemas":
			schemas = v
		case "operations":
			rawOps = v
		}
	}
	list, _ := schemas.([]any)
	ok := false
	for _, s := range list {
		if u, _ := s.(string); strings.EqualFold(u, URNPatchOp) {
			ok = true
		} else {
			return nil, badRequest(TypeInvalidSyntax, "unknown schema %v in a PatchOp request", s)
		}
	}
	if !ok {
		return nil, badRequest(TypeInvalidSyntax, "schemas must be [%q]", URNPatchOp)
	}
	ops, isList := rawOps.([]any)
	if !isList || len(ops) == 0 {
		return nil, badRequest(TypeInvalidSyntax, "Operations must be a non-empty array")
	}
	if len(ops) > maxPatchOps {
		return nil, badRequest(TypeInvalidValue, "more than %d operations", maxPatchOps)
	}
	out := make([]patchOp, 0, len(ops))
	for i, o := range ops {
		m, isMap := o.(map[string]any)
		if !isMap {
			return nil, badRequest(TypeInvalidSyntax, "Operations[%d] must be an object", i)
		}
		var op patchOp
		for k, v := range m {
			switch strings.ToLower(k) {
			case "op":
				s, isStr := v.(string)
				if !isStr {
					return nil, badRequest(TypeInvalidSyntax, "Operations[%d].op must be a string", i)
				}
				op.Op = strings.ToLower(s)
			case "path":
				s, isStr := v.(string)
				if !isStr {
					return nil, badRequest(TypeInvalidPath, "Operations[%d].path must be a string", i)
				}
				op.Path = strings.TrimSpace(s)
			case "value":
				op.Value, op.HasValue = v, true
			}
		}
		switch op.Op {
		case "add", "replace":
			if !op.HasValue {
				return nil, badRequest(TypeInvalidValue, "Operations[%d]: %s needs a value", i, op.Op)
			}
		case "remove":
		default:
			return nil, badRequest(TypeInvalidSyntax, "Operations[%d]: unknown op %q", i, op.Op)
		}
		out = append(out, op)
	}
	return out, nil
}

// memberFunc receives the operations on a group's members, which are not
// part of the in-memory state: vf is the value filter of members[...],
// ids the member ids of the value.
type memberFunc func(op string, vf filter.Expression, value any, hasValue bool) error

// patcher applies PATCH operations to the writable SCIM view of one
// resource. Every operation is applied to the in-memory state first; the
// caller writes the result once, in the same transaction as the member
// changes, so a request with one bad operation changes nothing.
type patcher struct {
	def     *resourceDef
	st      map[string]any
	members memberFunc
}

func (p *patcher) apply(op patchOp) error {
	if op.Path != "" {
		return p.applyPath(op.Op, op.Path, op.Value, op.HasValue, false)
	}
	if op.Op == "remove" {
		return badRequest(TypeNoTarget, "remove needs a path")
	}
	m, ok := op.Value.(map[string]any)
	if !ok {
		return badRequest(TypeInvalidValue, "%s without a path needs an object value", op.Op)
	}
	for _, k := range sortedKeys(m) {
		v := m[k]
		switch strings.ToLower(k) {
		case "schemas", "id", "meta":
			continue // Okta and authentik echo them back
		}
		if ext := p.def.extension(k); ext != nil {
			em, ok := v.(map[string]any)
			if !ok {
				if v == nil && op.Op == "replace" {
					delete(p.st, ext.URN)
					continue
				}
				return badRequest(TypeInvalidValue, "%s must be an object", ext.URN)
			}
			for _, sk := range sortedKeys(em) {
				if err := p.applyPath(op.Op, ext.URN+":"+sk, em[sk], true, true); err != nil {
					return err
				}
			}
			continue
		}
		if err := p.applyPath(op.Op, k, v, true, true); err != nil {
			return err
		}
	}
	return nil
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// applyPath applies one operation on an attribute path. lenient is set for
// the keys of a path-less add/replace, where unknown and read-only
// attributes are ignored as in POST.
func (p *patcher) applyPath(op, path string, value any, hasValue, lenient bool) error {
	if ext := p.def.extension(path); ext != nil { // the whole extension
		switch op {
		case "remove":
			delete(p.st, ext.URN)
			return nil
		default:
			em, ok := value.(map[string]any)
			if !ok {
				return badRequest(TypeInvalidValue, "%s must be an object", ext.URN)
			}
			for _, sk := range sortedKeys(em) {
				if err := p.applyPath(op, ext.URN+":"+sk, em[sk], true, true); err != nil {
					return err
				}
			}
			return nil
		}
	}
	parsed, err := parsePath(path)
	if err != nil {
		if lenient {
			return nil
		}
		return badRequest(TypeInvalidPath, "path %q does not parse", path)
	}
	sch := p.def.schemaFor(parsed.AttributePath.URI())
	if sch == nil {
		return badRequest(TypeInvalidPath, "path %q names an unknown schema", path)
	}
	a := sch.attr(parsed.AttributePath.AttributeName)
	if a == nil {
		if lenient {
			return nil
		}
		return badRequest(TypeInvalidPath, "unknown attribute in path %q", path)
	}
	if a.WriteOnly {
		return nil // a password is accepted and dropped: never stored
	}
	if a.ReadOnly {
		if lenient {
			return nil
		}
		return &Error{Status: 400, ScimType: TypeMutability, Detail: a.Name + " is read-only"}
	}
	subName := parsed.AttributePath.SubAttributeName()
	if subName == "" {
		subName = parsed.SubAttributeName()
	} else if parsed.SubAttribute != nil {
		return badRequest(TypeInvalidPath, "path %q has two sub-attributes", path)
	}
	if p.members != nil && a.Name == "members" && sch == p.def.Core {
		if subName != "" {
			return badRequest(TypeInvalidPath, "members sub-attributes cannot be patched")
		}
		return p.members(op, parsed.ValueExpression, value, hasValue)
	}
	var sub *attrDef
	if subName != "" {
		if a.Kind != kComplex {
			return badRequest(TypeInvalidPath, "%s has no sub-attributes", a.Name)
		}
		if sub = a.sub(subName); sub == nil {
			if lenient {
				return nil
			}
			return badRequest(TypeInvalidPath, "%s has no sub-attribute %q", a.Name, subName)
		}
		if sub.ReadOnly {
			if lenient {
				return nil
			}
			return &Error{Status: 400, ScimType: TypeMutability, Detail: a.Name + "." + sub.Name + " is read-only"}
		}
	}
	container := p.st
	if sch != p.def.Core {
		c, _ := p.st[sch.URN].(map[string]any)
		if c == nil {
			c = map[string]any{}
		}
		container = c
		defer func() {
			if len(c) > 0 {
				p.st[sch.URN] = c
			} else {
				delete(p.st, sch.URN)
			}
		}()
	}
	if parsed.ValueExpression != nil {
		return applyFiltered(container, a, sub, parsed.ValueExpression, op, value)
	}
	if sub != nil {
		return applySub(container, a, sub, op, value)
	}
	return applyAttr(container, a, op, value, hasValue)
}

func applyAttr(c map[string]any, a *attrDef, op string, value any, hasValue bool) error {
	switch op {
	case "remove":
		if hasValue && value != nil && a.Multi {
			return removeValues(c, a, value)
		}
		delete(c, a.Name)
		return nil
	case "replace":
		cv, err := coerce(a, value)
		if err != nil {
			return err
		}
		if cv == nil {
			delete(c, a.Name)
			return nil
		}
		if a.Kind == kComplex && !a.Multi { // RFC 7644 §3.5.2.3: sub-attributes not given stay
			old, _ := c[a.Name].(map[string]any)
			c[a.Name] = merge(old, cv.(map[string]any))
			return nil
		}
		c[a.Name] = cv
		return nil
	default: // add
		cv, err := coerce(a, value)
		if err != nil || cv == nil {
			return err
		}
		switch {
		case a.Multi:
			old, _ := c[a.Name].([]any)
			for _, e := range cv.([]any) {
				if containsValue(old, e) {
					continue
				}
				if isPrimary(e) {
					clearPrimary(old)
				}
				old = append(old, e)
			}
			c[a.Name] = old
		case a.Kind == kComplex:
			old, _ := c[a.Name].(map[string]any)
			c[a.Name] = merge(old, cv.(map[string]any))
		default:
			c[a.Name] = cv
		}
		return nil
	}
}

// removeValues removes the given values of a multi-valued attribute (Entra
// removes members and e-mails with a value array and no filter).
func removeValues(c map[string]any, a *attrDef, value any) error {
	cv, err := coerce(a, value)
	if err != nil {
		return err
	}
	old, _ := c[a.Name].([]any)
	var keep []any
	for _, e := range old {
		drop := false
		for _, r := range cv.([]any) {
			if sameValue(a, e, r) {
				drop = true
				break
			}
		}
		if !drop {
			keep = append(keep, e)
		}
	}
	if len(keep) == 0 {
		delete(c, a.Name)
	} else {
		c[a.Name] = keep
	}
	return nil
}

func sameValue(a *attrDef, e, r any) bool {
	em, ok1 := e.(map[string]any)
	rm, ok2 := r.(map[string]any)
	if !ok1 || !ok2 {
		return reflect.DeepEqual(e, r)
	}
	rv, hasV := rm["value"]
	if !hasV {
		return reflect.DeepEqual(em, rm)
	}
	es, _ := em["value"].(string)
	rs, _ := rv.(string)
	if sa := a.sub("value"); sa != nil && !sa.CaseExact {
		return strings.EqualFold(es, rs)
	}
	return es == rs
}

func applySub(c map[string]any, a, sub *attrDef, op string, value any) error {
	var cv any
	if op != "remove" {
		var err error
		if cv, err = coerce(sub, value); err != nil {
			return err
		}
	}
	set := func(m map[string]any) {
		if cv == nil {
			delete(m, sub.Name)
		} else {
			m[sub.Name] = cv
		}
	}
	if !a.Multi {
		m, _ := c[a.Name].(map[string]any)
		if m == nil {
			if op == "remove" || cv == nil {
				return nil
			}
			m = map[string]any{}
		}
		set(m)
		if len(m) == 0 {
			delete(c, a.Name)
		} else {
			c[a.Name] = m
		}
		return nil
	}
	list, _ := c[a.Name].([]any)
	if len(list) == 0 {
		if op == "remove" || cv == nil {
			return nil
		}
		c[a.Name] = []any{map[string]any{sub.Name: cv}}
		return nil
	}
	for _, e := range list {
		if m, ok := e.(map[string]any); ok {
			set(m)
		}
	}
	return nil
}

func applyFiltered(c map[string]any, a, sub *attrDef, vf filter.Expression, op string, value any) error {
	if !a.Multi || a.Kind != kComplex {
		return badRequest(TypeInvalidPath, "%s is not a multi-valued complex attribute", a.Name)
	}
	list, _ := c[a.Name].([]any)
	var matched []int
	for i, e := range list {
		m, _ := e.(map[string]any)
		ok, err := matchElem(a, vf, m, 0)
		if err != nil {
			return err
		}
		if ok {
			matched = append(matched, i)
		}
	}
	if op == "remove" {
		if len(matched) == 0 {
			return badRequest(TypeNoTarget, "no %s value matches the filter", a.Name)
		}
		var keep []any
		mi := 0
		for i, e := range list {
			if mi < len(matched) && matched[mi] == i {
				mi++
				if sub != nil {
					m := e.(map[string]any)
					delete(m, sub.Name)
					keep = append(keep, m)
				}
				continue
			}
			keep = append(keep, e)
		}
		if len(keep) == 0 {
			delete(c, a.Name)
		} else {
			c[a.Name] = keep
		}
		return nil
	}
	one := *a
	one.Multi = false
	var cv any
	var err error
	if sub != nil {
		cv, err = coerce(sub, value)
	} else {
		cv, err = coerce(&one, value)
	}
	if err != nil {
		return err
	}
	if len(matched) == 0 {
		// Entra and Okta set emails[type eq "work"].value on users
		// without a work e-mail: create the value the filter describes.
		seed, ok := eqSeed(a, vf)
		if !ok || cv == nil {
			return badRequest(TypeNoTarget, "no %s value matches the filter", a.Name)
		}
		if sub != nil {
			seed[sub.Name] = cv
		} else {
			seed = merge(seed, cv.(map[string]any))
		}
		if isPrimary(seed) {
			clearPrimary(list)
		}
		c[a.Name] = append(list, seed)
		return nil
	}
	for _, i := range matched {
		m, _ := list[i].(map[string]any)
		if m == nil {
			m = map[string]any{}
		}
		if sub != nil {
			if cv == nil {
				delete(m, sub.Name)
			} else {
				m[sub.Name] = cv
			}
		} else if cm, ok := cv.(map[string]any); ok {
			if op == "replace" {
				m = cm
			} else {
				m = merge(m, cm)
			}
		}
		if isPrimary(m) && op != "remove" && (sub == nil || sub.Name == "primary") {
			for j, o := range list {
				if om, ok := o.(map[string]any); ok && j != i {
					delete(om, "primary")
				}
			}
		}
		list[i] = m
	}
	c[a.Name] = list
	return nil
}

// eqSeed returns the element a filter of the form `sub eq "v"` (possibly
// and-ed) describes.
func eqSeed(a *attrDef, e filter.Expression) (map[string]any, bool) {
	switch x := e.(type) {
	case *filter.AttributeExpression:
		if !strings.EqualFold(string(x.Operator), "eq") || x.AttributePath.SubAttribute != nil {
			return nil, false
		}
		sa := a.sub(x.AttributePath.AttributeName)
		if sa == nil {
			return nil, false
		}
		return map[string]any{sa.Name: x.CompareValue}, true
	case *filter.LogicalExpression:
		if !strings.EqualFold(string(x.Operator), "and") {
			return nil, false
		}
		l, ok1 := eqSeed(a, x.Left)
		r, ok2 := eqSeed(a, x.Right)
		if !ok1 || !ok2 {
			return nil, false
		}
		return merge(l, r), true
	}
	return nil, false
}

// memberIDsFromFilter returns the ids of a members[value eq "…"] filter,
// possibly or-ed; other filters cannot be applied without reading every
// member and are refused.
func memberIDsFromFilter(e filter.Expression) ([]string, error) {
	switch x := e.(type) {
	case *filter.AttributeExpression:
		if strings.EqualFold(string(x.Operator), "eq") && strings.EqualFold(x.AttributePath.AttributeName, "value") && x.AttributePath.SubAttribute == nil {
			if s, ok := x.CompareValue.(string); ok {
				return []string{s}, nil
			}
		}
	case *filter.LogicalExpression:
		if strings.EqualFold(string(x.Operator), "or") {
			l, err := memberIDsFromFilter(x.Left)
			if err != nil {
				return nil, err
			}
			r, err := memberIDsFromFilter(x.Right)
			if err != nil {
				return nil, err
			}
			return append(l, r...), nil
		}
	}
	return nil, badRequest(TypeInvalidFilter, `members can only be selected with value eq "<id>" (or-ed)`)
}

// memberIDs extracts the user ids of a members value.
func memberIDs(value any) ([]string, error) {
	cv, err := coerce(groupDef.Core.attr("members"), value)
	if err != nil {
		return nil, err
	}
	list, _ := cv.([]any)
	ids := make([]string, 0, len(list))
	seen := map[string]bool{}
	for _, e := range list {
		m, _ := e.(map[string]any)
		v, _ := m["value"].(string)
		if v == "" {
			return nil, badRequest(TypeInvalidValue, "every member needs a value (the user id)")
		}
		if !seen[v] {
			seen[v] = true
			ids = append(ids, v)
		}
	}
	return ids, nil
}

func merge(old, add map[string]any) map[string]any {
	out := make(map[string]any, len(old)+len(add))
	for k, v := range old {
		out[k] = v
	}
	for k, v := range add {
		out[k] = v
	}
	return out
}

func containsValue(list []any, e any) bool {
	for _, o := range list {
		if reflect.DeepEqual(o, e) {
			return true
		}
	}
	return false
}

func isPrimary(e any) bool {
	m, _ := e.(map[string]any)
	b, _ := m["primary"].(bool)
	return b
}

func clearPrimary(list []any) {
	for _, e := range list {
		if m, ok := e.(map[string]any); ok {
			delete(m, "primary")
		}
	}
}

// cloneState deep-copies a state map (via JSON) so that a failed PATCH
// leaves no trace in the original.
func cloneState(st map[string]any) map[string]any {
	b, _ := json.Marshal(st)
	var out map[string]any
	_ = decodeJSON(b, &out)
	return out
}

// simplePath is an attribute path without URN, optionally with one value
// filter and a sub-attribute: name.givenName, members[value eq "…"],
// emails[type eq "work"].value.
var simplePath = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9_-]*)(?:\.([A-Za-z][A-Za-z0-9_-]*)|\[([^\[\]]*)\](?:\.([A-Za-z][A-Za-z0-9_-]*))?)?$`)

// parsePath parses a PATCH path. The common shapes skip the general
// parser (a PEG parser costing ~100 µs a path, which PATCH paid inside its
// write transaction); FuzzPatchPath checks that both parse them alike.
func parsePath(path string) (filter.Path, error) {
	if p, ok := fastPath(path); ok {
		return p, nil
	}
	return filter.ParsePath([]byte(path))
}

func fastPath(path string) (filter.Path, bool) {
	m := simplePath.FindStringSubmatchIndex(path)
	if m == nil {
		return filter.Path{}, false
	}
	part := func(i int) (string, bool) {
		if m[2*i] < 0 {
			return "", false
		}
		return path[m[2*i]:m[2*i+1]], true
	}
	attr, _ := part(1)
	p := filter.Path{AttributePath: filter.AttributePath{AttributeName: attr}}
	if sub, ok := part(2); ok {
		p.AttributePath.SubAttribute = &sub
	}
	if vf, ok := part(3); ok {
		if strings.ContainsFunc(vf, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return filter.Path{}, false // the general parser decides
		}
		expr, ok := fastFilter(vf)
		if !ok {
			return filter.Path{}, false
		}
		p.ValueExpression = expr
		if sub, ok := part(4); ok {
			p.SubAttribute = &sub
		}
	}
	return p, true
}
