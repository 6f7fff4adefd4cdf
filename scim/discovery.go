package scim

import (
	"encoding/json"
	"fmt"
	"net/http"

	lib "github.com/elimity-com/scim"
	"github.com/elimity-com/scim/optional"
	"github.com/elimity-com/scim/schema"
)

// dirsyncdSchema is the dirsyncd User extension as served at /Schemas.
func dirsyncdSchema() schema.Schema {
	ro := schema.AttributeMutabilityReadOnly()
	str := func(name, desc string, exact bool, mut schema.AttributeMutability, multi bool) schema.SimpleParams {
		return schema.SimpleStringParams(schema.StringParams{Name: name, Description: optional.NewString(desc), CaseExact: exact, Mutability: mut, MultiValued: multi})
	}
	return schema.Schema{
		ID:          URNDirsyncd,
		Name:        optional.NewString("dirsyncd User"),
		Description: optional.NewString("Legal-aid provider attributes of a user; roles and offices are the user's effective grants (read-only)."),
		Attributes: []schema.CoreAttribute{
			schema.SimpleCoreAttribute(str("firmNumber", "Primary provider firm number (CWA firmNumber).", true, schema.AttributeMutabilityReadWrite(), false)),
			schema.SimpleCoreAttribute(str("userType", "The user's type in the legal-aid directory.", false, schema.AttributeMutabilityReadWrite(), false)),
			schema.SimpleCoreAttribute(str("usualRole", "The user's usual role (case access group grants match it).", false, schema.AttributeMutabilityReadWrite(), false)),
			schema.SimpleCoreAttribute(str("location", "The user's location (case access grants may be restricted to it).", false, schema.AttributeMutabilityReadWrite(), false)),
			schema.ComplexCoreAttribute(schema.ComplexParams{
				Name: "roles", MultiValued: true, Mutability: ro,
				Description: optional.NewString("Effective service roles (grants)."),
				SubAttributes: []schema.SimpleParams{
					str("service", "Service slug.", true, ro, false),
					str("role", "Role slug.", true, ro, false),
					str("firmNumber", "Firm of the grant.", true, ro, false),
					schema.SimpleBooleanParams(schema.BooleanParams{Name: "allOffices", Mutability: ro}),
					str("offices", "Office codes when not all offices.", true, ro, true),
				},
			}),
			schema.SimpleCoreAttribute(str("offices", "Office codes the user's grants cover.", true, ro, true)),
		},
	}
}

// newDiscovery serves /Schemas and /ResourceTypes with elimity-com/scim and
// /ServiceProviderConfig itself (the library hard-codes etag and sort as
// unsupported).
func newDiscovery(opts Options) (http.Handler, error) {
	srv, err := lib.NewServer(&lib.ServerArgs{
		ServiceProviderConfig: &lib.ServiceProviderConfig{MaxResults: opts.MaxResults, SupportFiltering: true, SupportPatch: true},
		ResourceTypes: []lib.ResourceType{
			{
				ID: optional.NewString("User"), Name: "User", Endpoint: "/Users",
				Description: optional.NewString("User Account"),
				Schema:      schema.CoreUserSchema(),
				SchemaExtensions: []lib.SchemaExtension{
					{Schema: schema.ExtensionEnterpriseUser()},
					{Schema: dirsyncdSchema()},
				},
			},
			{
				ID: optional.NewString("Group"), Name: "Group", Endpoint: "/Groups",
				Description: optional.NewString("Group"),
				Schema:      schema.CoreGroupSchema(),
			},
		},
	}, lib.WithBaseURL(opts.BaseURL))
	if err != nil {
		return nil, fmt.Errorf("scim: discovery server: %w", err)
	}
	spc, err := json.Marshal(map[string]any{
		"schemas":          []string{"urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"},
		"documentationUri": "https://github.com/dirsyncd/dirsyncd",
		"patch":            map[string]any{"supported": true},
		"bulk":             map[string]any{"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
		"filter":           map[string]any{"supported": true, "maxResults": opts.MaxResults},
		"changePassword":   map[string]any{"supported": false},
		"sort":             map[string]any{"supported": true},
		"etag":             map[string]any{"supported": true},
		"authenticationSchemes": []any{map[string]any{
			"type": "oauthbearertoken", "name": "OAuth Bearer Token", "primary": true,
			"description": "Authentication with a per-client bearer token (scope scim).",
		}},
		"meta": map[string]any{"resourceType": "ServiceProviderConfig", "location": opts.BaseURL + "/ServiceProviderConfig"},
	})
	if err != nil {
		return nil, fmt.Errorf("scim: service provider config: %w", err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ServiceProviderConfig" {
			w.Header().Set("Content-Type", contentType)
			_, _ = w.Write(spc)
			return
		}
		srv.ServeHTTP(w, r)
	}), nil
}
