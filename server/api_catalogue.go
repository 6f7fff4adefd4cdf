package server

import (
	"net/http"
	"slices"
	"strings"

	"github.com/dirsyncd/dirsyncd/directory"
)

// CatalogueRole is one role of GET /api/v1/catalogue.
type CatalogueRole struct {
	ID           string               `json:"id"` // service/role
	Slug         string               `json:"slug"`
	Name         string               `json:"name"`
	FirmTypes    []directory.FirmType `json:"firmTypes,omitempty"`
	Admin        bool                 `json:"admin"`
	NeedsOffices bool                 `json:"needsOffices"`
	// Grantable: the caller may give this role (in some firm they manage).
	Grantable bool `json:"grantable"`
}

// CatalogueService is one service of GET /api/v1/catalogue.
type CatalogueService struct {
	Slug      string          `json:"slug"`
	Name      string          `json:"name"`
	AutoGrant bool            `json:"autoGrant"`
	Roles     []CatalogueRole `json:"roles"`
}

func (s *Server) catalogueFor(c *caller) []CatalogueService {
	out := []CatalogueService{}
	for _, svc := range s.adm.cat.Services {
		cs := CatalogueService{Slug: svc.Slug, Name: svc.Name, AutoGrant: svc.AutoGrant}
		for _, r := range svc.Roles {
			grantable := c.support() || (!r.Admin && (c.p.Has("admin:write") || len(c.firms) > 0))
			cs.Roles = append(cs.Roles, CatalogueRole{ID: r.ID(), Slug: r.Slug, Name: r.Name, FirmTypes: r.FirmTypes, Admin: r.Admin,
				NeedsOffices: r.NeedsOffices, Grantable: grantable})
		}
		out = append(out, cs)
	}
	return out
}

// getCatalogue: GET /api/v1/catalogue, every authenticated caller.
func (s *Server) getCatalogue(w http.ResponseWriter, r *http.Request, c *caller) {
	writeJSON(w, http.StatusOK, map[string]any{"services": s.catalogueFor(c)})
}

// FirmDetail is GET /api/v1/firms/{number}.
type FirmDetail struct {
	Firm    directory.Firm     `json:"firm"`
	Offices []directory.Office `json:"offices"`
}

// listFirms: every firm for support and admin:read, the managed firms
// for a firm admin.
func (s *Server) listFirms(w http.ResponseWriter, r *http.Request, c *caller) {
	firms, err := s.adm.store.ListFirms(r.Context())
	if err != nil {
		s.internal(w, r, "list firms", err)
		return
	}
	if !c.seesAll() {
		firms = slices.DeleteFunc(firms, func(f directory.Firm) bool { return !c.firms[f.Number] })
	}
	if firms == nil {
		firms = []directory.Firm{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"firms": firms})
}

func (s *Server) getFirm(w http.ResponseWriter, r *http.Request, c *caller) {
	n := r.PathValue("number")
	if !c.seesAll() && !c.firms[n] {
		s.forbid(w, r, "you may see only firm "+joinFirms(c))
		return
	}
	f, err := s.adm.store.GetFirm(r.Context(), n)
	if isNotFound(err) {
		writeError(w, http.StatusNotFound, "not_found", "no firm with this number")
		return
	}
	if err != nil {
		s.internal(w, r, "get firm", err)
		return
	}
	offices, err := s.adm.store.ListOffices(r.Context(), n)
	if err != nil {
		s.internal(w, r, "list offices", err)
		return
	}
	if offices == nil {
		offices = []directory.Office{}
	}
	writeJSON(w, http.StatusOK, FirmDetail{Firm: f, Offices: offices})
}

func joinFirms(c *caller) string {
	if m := c.managed(); len(m) > 0 {
		return strings.Join(m, ", ")
	}
	return "(none)"
}
