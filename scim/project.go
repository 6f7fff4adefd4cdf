package scim

import (
	"strings"

	filter "github.com/scim2/filter-parser/v2"
)

// projection implements the attributes and excludedAttributes parameters
// (RFC 7644 §3.4.2.5). Keys are lower-cased "attr", "attr.sub", an
// extension URN, or "urn:attr[.sub]" for extension attributes.
type projection struct {
	include map[string]bool
	exclude map[string]bool
}

func parseProjection(def *resourceDef, attributes, excluded string) (projection, error) {
	var p projection
	var err error
	if p.include, err = projKeys(def, attributes); err != nil {
		return p, err
	}
	if p.exclude, err = projKeys(def, excluded); err != nil {
		return p, err
	}
	return p, nil
}

func projKeys(def *resourceDef, list string) (map[string]bool, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	out := map[string]bool{}
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if ext := def.extension(item); ext != nil {
			out[lower(ext.URN)] = true
			continue
		}
		ap, err := filter.ParseAttrPath([]byte(item))
		if err != nil {
			return nil, badRequest(TypeInvalidValue, "attribute %q is not an attribute path", item)
		}
		out[pathKey(def, ap)] = true
	}
	return out, nil
}

func keyOf(urn, attr, sub string) string {
	k := lower(attr)
	if sub != "" {
		k += "." + lower(sub)
	}
	if urn != "" {
		k = lower(urn) + ":" + k
	}
	return k
}

// wants reports whether attribute attr (of extension urn, "" = core) is
// returned, so that computed attributes are only read when needed.
func (p projection) wants(urn, attr string) bool {
	if p.include != nil {
		if urn != "" && p.include[lower(urn)] {
			return true
		}
		k := keyOf(urn, attr, "")
		if p.include[k] {
			return true
		}
		for ik := range p.include {
			if strings.HasPrefix(ik, k+".") {
				return true
			}
		}
		return false
	}
	if p.exclude != nil {
		if urn != "" && p.exclude[lower(urn)] {
			return false
		}
		return !p.exclude[keyOf(urn, attr, "")]
	}
	return true
}

func (p projection) apply(def *resourceDef, res map[string]any) map[string]any {
	if p.include == nil && p.exclude == nil {
		return res
	}
	out := map[string]any{"id": res["id"], "schemas": res["schemas"]}
	for k, v := range res {
		if k == "id" || k == "schemas" {
			continue
		}
		if ext := def.extension(k); ext != nil {
			if pv := p.container(ext.URN, v); pv != nil {
				out[k] = pv
			}
			continue
		}
		if pv := p.attr("", k, v); pv != nil {
			out[k] = pv
		}
	}
	return out
}

func (p projection) container(urn string, v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	if p.include != nil && p.include[lower(urn)] {
		return m
	}
	if p.exclude != nil && p.exclude[lower(urn)] {
		return nil
	}
	out := map[string]any{}
	for k, sv := range m {
		if pv := p.attr(urn, k, sv); pv != nil {
			out[k] = pv
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// attr projects one attribute and, for complex values, its sub-attributes.
func (p projection) attr(urn, name string, v any) any {
	k := keyOf(urn, name, "")
	if p.include != nil {
		if p.include[k] {
			return v
		}
		subs := map[string]bool{}
		for ik := range p.include {
			if s, ok := strings.CutPrefix(ik, k+"."); ok {
				subs[s] = true
			}
		}
		if len(subs) == 0 {
			return nil
		}
		return projectSubs(v, func(s string) bool { return subs[lower(s)] })
	}
	if p.exclude[k] {
		return nil
	}
	hasSub := false
	for ek := range p.exclude {
		if strings.HasPrefix(ek, k+".") {
			hasSub = true
			break
		}
	}
	if !hasSub {
		return v
	}
	return projectSubs(v, func(s string) bool { return !p.exclude[k+"."+lower(s)] })
}

func projectSubs(v any, keep func(string) bool) any {
	one := func(e any) any {
		m, ok := e.(map[string]any)
		if !ok {
			return nil
		}
		out := map[string]any{}
		for sk, sv := range m {
			if keep(sk) {
				out[sk] = sv
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	}
	if list, ok := v.([]any); ok {
		out := make([]any, 0, len(list))
		for _, e := range list {
			if pe := one(e); pe != nil {
				out = append(out, pe)
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	}
	if pv := one(v); pv != nil {
		return pv
	}
	return nil
}
