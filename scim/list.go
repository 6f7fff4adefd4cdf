package scim

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/dirsyncd/dirsyncd/store"
)

// listQuery is a parsed list request, ready for the store.
type listQuery struct {
	Filter   store.Filter
	SortBy   store.Field
	SortDesc bool
	Offset   int
	Limit    int
}

type listResponse struct {
	Schemas      []string         `json:"schemas"`
	TotalResults int64            `json:"totalResults"`
	StartIndex   int              `json:"startIndex"`
	ItemsPerPage int              `json:"itemsPerPage"`
	Resources    []map[string]any `json:"Resources"`
}

// list serves GET /Users and /Groups (and, with param reading the search
// body, POST /.search). Filtering, sorting and paging all run in the store.
func (h *Handler) list(w http.ResponseWriter, r *http.Request, def *resourceDef, ops resourceOps, param func(string) string) {
	q, start, p, err := h.parseList(def, param)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	items, total, err := ops.list(r.Context(), q, p)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if items == nil {
		items = []map[string]any{}
	}
	h.writeJSON(w, http.StatusOK, listResponse{
		Schemas: []string{URNListResp}, TotalResults: total, StartIndex: start,
		ItemsPerPage: len(items), Resources: items,
	}, 0)
}

func (h *Handler) parseList(def *resourceDef, param func(string) string) (listQuery, int, projection, error) {
	var q listQuery
	start := 1
	if s := strings.TrimSpace(param("startIndex")); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return q, 0, projection{}, badRequest(TypeInvalidValue, "startIndex must be an integer")
		}
		if n > 1 {
			start = n
		}
	}
	count := h.opts.DefaultCount
	if s := strings.TrimSpace(param("count")); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return q, 0, projection{}, badRequest(TypeInvalidValue, "count must be an integer")
		}
		count = max(n, 0)
	}
	count = min(count, h.opts.MaxResults)
	f, err := parseFilter(def, param("filter"))
	if err != nil {
		return q, 0, projection{}, err
	}
	sb, err := sortField(def, strings.TrimSpace(param("sortBy")))
	if err != nil {
		return q, 0, projection{}, err
	}
	switch strings.ToLower(strings.TrimSpace(param("sortOrder"))) {
	case "", "ascending":
	case "descending":
		q.SortDesc = true
	default:
		return q, 0, projection{}, badRequest(TypeInvalidValue, "sortOrder must be ascending or descending")
	}
	p, err := parseProjection(def, param("attributes"), param("excludedAttributes"))
	if err != nil {
		return q, 0, projection{}, err
	}
	q.Filter, q.SortBy, q.Offset, q.Limit = f, sb, start-1, count
	return q, start, p, nil
}

// search serves POST /Users/.search and /Groups/.search (RFC 7644 §3.4.3).
func (h *Handler) search(w http.ResponseWriter, r *http.Request, def *resourceDef, ops resourceOps) {
	b, err := h.readBody(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	var req map[string]any
	if err := decodeBody(b, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	params := map[string]string{}
	schemaOK := false
	for k, v := range req {
		lk := strings.ToLower(k)
		switch lk {
		case "schemas":
			list, _ := v.([]any)
			for _, s := range list {
				if u, _ := s.(string); strings.EqualFold(u, URNSearchReq) {
					schemaOK = true
				}
			}
		case "attributes", "excludedattributes":
			list, ok := v.([]any)
			if !ok {
				h.writeError(w, r, badRequest(TypeInvalidValue, "%s must be an array of strings", k))
				return
			}
			var parts []string
			for _, e := range list {
				s, ok := e.(string)
				if !ok {
					h.writeError(w, r, badRequest(TypeInvalidValue, "%s must be an array of strings", k))
					return
				}
				parts = append(parts, s)
			}
			params[lk] = strings.Join(parts, ",")
		case "filter", "sortby", "sortorder", "startindex", "count":
			params[lk] = fmt.Sprint(v)
		}
	}
	if !schemaOK {
		h.writeError(w, r, badRequest(TypeInvalidSyntax, "schemas must be [%q]", URNSearchReq))
		return
	}
	h.list(w, r, def, ops, func(name string) string { return params[strings.ToLower(name)] })
}
