package scim

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/dirsyncd/dirsyncd/directory"
)

// userFromState builds the stored user from a normalised SCIM User (POST,
// PUT, or the result of a PATCH). Columns get the queryable attributes;
// everything else (other name parts, phone numbers, addresses, the
// enterprise extension, ...) goes to Attrs. No password ever reaches it:
// normalizeResource and the PATCH engine drop write-only attributes.
func userFromState(st map[string]any, base directory.User) (directory.User, error) {
	u := base
	u.UserName, _ = st["userName"].(string)
	u.UserName = strings.TrimSpace(u.UserName)
	if u.UserName == "" {
		return u, badRequest(TypeInvalidValue, "userName is required")
	}
	u.ExternalID, _ = st["externalId"].(string)
	if err := checkKeyLen("userName", u.UserName); err != nil {
		return u, err
	}
	if err := checkKeyLen("externalId", u.ExternalID); err != nil {
		return u, err
	}
	u.DisplayName, _ = st["displayName"].(string)
	u.Active = true
	if b, ok := st["active"].(bool); ok {
		u.Active = b
	}
	u.GivenName, u.FamilyName = "", ""
	attrs := map[string]any{}
	if n, ok := st["name"].(map[string]any); ok {
		rest := map[string]any{}
		for k, v := range n {
			switch k {
			case "givenName":
				u.GivenName, _ = v.(string)
			case "familyName":
				u.FamilyName, _ = v.(string)
			default:
				rest[k] = v
			}
		}
		if len(rest) > 0 {
			attrs["name"] = rest
		}
	}
	u.Emails, u.Email = nil, ""
	if list, ok := st["emails"].([]any); ok {
		for _, e := range list {
			m, _ := e.(map[string]any)
			v, _ := m["value"].(string)
			v = strings.TrimSpace(v)
			if v == "" {
				continue
			}
			if err := checkKeyLen("emails.value", v); err != nil {
				return u, err
			}
			if !validEmail(v) {
				return u, badRequest(TypeInvalidValue, "emails: %q is not a valid e-mail address", v)
			}
			t, _ := m["type"].(string)
			p, _ := m["primary"].(bool)
			if p && u.Email != "" {
				p = false // at most one primary (RFC 7643 §2.4)
			}
			if p {
				u.Email = v
			}
			u.Emails = append(u.Emails, directory.Email{Value: v, Type: t, Primary: p})
		}
		if u.Email == "" && len(u.Emails) > 0 {
			u.Email = u.Emails[0].Value
		}
	}
	u.UserType, _ = st["userType"].(string)
	u.FirmNumber, u.UsualRole, u.Location = "", "", ""
	if ext, ok := st[URNDirsyncd].(map[string]any); ok {
		u.FirmNumber, _ = ext["firmNumber"].(string)
		u.UsualRole, _ = ext["usualRole"].(string)
		u.Location, _ = ext["location"].(string)
		u.UsualRole, u.Location = strings.TrimSpace(u.UsualRole), strings.TrimSpace(u.Location)
		if t, ok := ext["userType"].(string); ok && t != "" {
			u.UserType = t
		}
	}
	for k, v := range st {
		switch k {
		case "userName", "externalId", "displayName", "active", "name", "emails", "userType", URNDirsyncd, "password":
		default:
			attrs[k] = v
		}
	}
	u.Attrs = nil
	if len(attrs) > 0 {
		b, err := json.Marshal(attrs)
		if err != nil {
			return u, fmt.Errorf("scim: encode attributes: %w", err)
		}
		u.Attrs = b
	}
	return u, nil
}

// userState is the inverse of userFromState: the writable SCIM view of a
// stored user, the starting point of a PATCH.
func userState(u directory.User) (map[string]any, error) {
	st := map[string]any{}
	if len(u.Attrs) > 0 {
		if err := decodeJSON(u.Attrs, &st); err != nil {
			return nil, fmt.Errorf("scim: decode attributes of user %s: %w", u.ID, err)
		}
		if st == nil {
			st = map[string]any{}
		}
	}
	delete(st, "password")
	st["userName"] = u.UserName
	setStr(st, "externalId", u.ExternalID)
	setStr(st, "displayName", u.DisplayName)
	st["active"] = u.Active
	setStr(st, "userType", u.UserType)
	name, _ := st["name"].(map[string]any)
	if name == nil {
		name = map[string]any{}
	}
	setStr(name, "givenName", u.GivenName)
	setStr(name, "familyName", u.FamilyName)
	if len(name) > 0 {
		st["name"] = name
	}
	if len(u.Emails) > 0 {
		list := make([]any, 0, len(u.Emails))
		for _, e := range u.Emails {
			m := map[string]any{"value": e.Value}
			setStr(m, "type", e.Type)
			if e.Primary {
				m["primary"] = true
			}
			list = append(list, m)
		}
		st["emails"] = list
	} else if u.Email != "" {
		st["emails"] = []any{map[string]any{"value": u.Email, "primary": true}}
	}
	ext := map[string]any{}
	setStr(ext, "firmNumber", u.FirmNumber)
	setStr(ext, "usualRole", u.UsualRole)
	setStr(ext, "location", u.Location)
	if len(ext) > 0 {
		st[URNDirsyncd] = ext
	}
	return st, nil
}

func setStr(m map[string]any, k, v string) {
	if v != "" {
		m[k] = v
	} else {
		delete(m, k)
	}
}

// etag is the weak entity tag of a resource version.
func etag(version int64) string { return fmt.Sprintf(`W/"%d"`, version) }

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func location(base, endpoint, id string) string {
	return base + endpoint + "/" + url.PathEscape(id)
}

// renderUser is the full SCIM representation of u. grants and groups are
// nil when the projection does not return them (not read at all).
func renderUser(u directory.User, base string, grants []directory.Grant, groups []directory.Group, withGrants, withGroups bool) (map[string]any, error) {
	st, err := userState(u)
	if err != nil {
		return nil, err
	}
	schemas := []any{URNUser}
	if _, ok := st[URNEnterprise]; ok {
		schemas = append(schemas, URNEnterprise)
	}
	ext, _ := st[URNDirsyncd].(map[string]any)
	if u.UserType != "" {
		if ext == nil {
			ext = map[string]any{}
		}
		ext["userType"] = u.UserType
	}
	if withGrants {
		if ext == nil {
			ext = map[string]any{}
		}
		roles := make([]any, 0, len(grants))
		offices := map[string]bool{}
		for _, g := range grants {
			r := map[string]any{"service": g.Service, "role": g.Role, "firmNumber": g.FirmNumber, "allOffices": g.AllOffices}
			if len(g.Offices) > 0 {
				os := make([]any, len(g.Offices))
				for i, o := range g.Offices {
					os[i] = o
					offices[o] = true
				}
				r["offices"] = os
			}
			roles = append(roles, r)
		}
		ext["roles"] = roles
		ol := make([]string, 0, len(offices))
		for o := range offices {
			ol = append(ol, o)
		}
		sort.Strings(ol)
		oa := make([]any, len(ol))
		for i, o := range ol {
			oa[i] = o
		}
		ext["offices"] = oa
		st[URNDirsyncd] = ext
	}
	if ext != nil {
		schemas = append(schemas, URNDirsyncd)
	}
	if withGroups {
		gl := make([]any, 0, len(groups))
		for _, g := range groups {
			if g.DeletedAt != nil {
				continue
			}
			gl = append(gl, map[string]any{"value": g.ID, "display": g.DisplayName, "$ref": location(base, "/Groups", g.ID), "type": "direct"})
		}
		st["groups"] = gl
	}
	st["id"] = u.ID
	st["schemas"] = schemas
	st["meta"] = map[string]any{
		"resourceType": "User",
		"created":      formatTime(u.CreatedAt),
		"lastModified": formatTime(u.UpdatedAt),
		"location":     location(base, "/Users", u.ID),
		"version":      etag(u.Version),
	}
	return st, nil
}

// groupState is the writable SCIM view of a group without its members
// (members are changed through the store's O(changed) member calls).
func groupState(g directory.Group) map[string]any {
	st := map[string]any{"displayName": g.DisplayName}
	setStr(st, "externalId", g.ExternalID)
	return st
}

func groupFromState(st map[string]any, base directory.Group) (directory.Group, error) {
	g := base
	g.DisplayName, _ = st["displayName"].(string)
	g.DisplayName = strings.TrimSpace(g.DisplayName)
	if g.DisplayName == "" {
		return g, badRequest(TypeInvalidValue, "displayName is required")
	}
	g.ExternalID, _ = st["externalId"].(string)
	if err := checkKeyLen("displayName", g.DisplayName); err != nil {
		return g, err
	}
	if err := checkKeyLen("externalId", g.ExternalID); err != nil {
		return g, err
	}
	return g, nil
}

func renderGroup(g directory.Group, base string, members []string, withMembers bool) map[string]any {
	st := groupState(g)
	if withMembers {
		ml := make([]any, 0, len(members))
		for _, id := range members {
			ml = append(ml, map[string]any{"value": id, "$ref": location(base, "/Users", id), "type": "User"})
		}
		st["members"] = ml
	}
	st["id"] = g.ID
	st["schemas"] = []any{URNGroup}
	st["meta"] = map[string]any{
		"resourceType": "Group",
		"created":      formatTime(g.CreatedAt),
		"lastModified": formatTime(g.UpdatedAt),
		"location":     location(base, "/Groups", g.ID),
		"version":      etag(g.Version),
	}
	return st
}
