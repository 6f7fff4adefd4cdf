package caseaccess

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/auth"
)

// maxBody bounds request bodies of the case routes.
const maxBody = 64 << 10

// API serves the admin routes under /api/v1/cases.
type API struct {
	svc  *Service
	meta func(*http.Request) audit.Meta
	log  *zap.Logger
}

// NewAPI returns the handlers; meta builds each request's audit.Meta
// (actor from the authenticated principal, request id).
func NewAPI(svc *Service, meta func(*http.Request) audit.Meta, log *zap.Logger) *API {
	if log == nil {
		log = zap.NewNop()
	}
	return &API{svc: svc, meta: meta, log: log.Named("caseaccess")}
}

// Route is one handler to mount with the scope it requires.
type Route struct {
	Pattern string
	Scope   string
	Handler http.Handler
}

// Routes lists the routes (net/http patterns).
func (a *API) Routes() []Route {
	r, w := auth.ScopeAdminRead, auth.ScopeAdminWrite
	return []Route{
		{"POST /api/v1/cases", w, http.HandlerFunc(a.createCase)},
		{"GET /api/v1/cases/{ref}", r, http.HandlerFunc(a.getCase)},
		{"GET /api/v1/cases/{ref}/invites", r, http.HandlerFunc(a.listInvites)},
		{"POST /api/v1/cases/{ref}/invites", w, http.HandlerFunc(a.invite)},
		{"PATCH /api/v1/cases/{ref}/invites/{id}", w, http.HandlerFunc(a.setExpiry)},
		{"DELETE /api/v1/cases/{ref}/invites/{id}", w, http.HandlerFunc(a.revoke)},
		{"POST /api/v1/cases/{ref}/groups", w, http.HandlerFunc(a.addGroup)},
		{"DELETE /api/v1/cases/{ref}/groups/{id}", w, http.HandlerFunc(a.removeGroup)},
		{"POST /api/v1/cases/{ref}/domains", w, http.HandlerFunc(a.addDomain)},
		{"DELETE /api/v1/cases/{ref}/domains/{id}", w, http.HandlerFunc(a.removeDomain)},
		// The decision records the first access (audited): read scope is
		// what a service asking for decisions holds.
		{"GET /api/v1/cases/{ref}/access/{user}", r, http.HandlerFunc(a.decide)},
		{"GET /api/v1/cases/{ref}/access", r, http.HandlerFunc(a.listAccess)},
	}
}

// errorBody is the server's JSON error with the field at fault.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field,omitempty"`
	} `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code, field, msg string) {
	var b errorBody
	b.Error.Code, b.Error.Message, b.Error.Field = code, msg, field
	writeJSON(w, status, b)
}

// fail answers a refused request with its 4xx, anything else with a 500
// that reveals nothing.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	if ce, ok := AsError(err); ok {
		status, code := http.StatusBadRequest, "invalid"
		switch ce.Kind {
		case KindNotFound:
			status, code = http.StatusNotFound, "not_found"
		case KindConflict:
			status, code = http.StatusConflict, "conflict"
		case KindForbidden:
			status, code = http.StatusForbidden, "forbidden"
		}
		writeErr(w, status, code, ce.Field, ce.Error())
		return
	}
	m := a.meta(r)
	a.log.Error("request failed", zap.Error(err), zap.String("request_id", m.RequestID), zap.String("route", r.Pattern))
	writeErr(w, http.StatusInternalServerError, "internal", "", "internal error (request id "+m.RequestID+")")
}

// decode reads one JSON object into v (unknown fields refused).
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			writeErr(w, http.StatusRequestEntityTooLarge, "too_large", "", "request body too large")
			return false
		}
		field := ""
		var te *json.UnmarshalTypeError
		var pe *time.ParseError
		switch {
		case errors.As(err, &te):
			field = te.Field
		case errors.As(err, &pe):
			field = "expiresAt"
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			field = strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		}
		writeErr(w, http.StatusBadRequest, "bad_request", field, "invalid JSON body: "+err.Error())
		return false
	}
	if dec.More() {
		writeErr(w, http.StatusBadRequest, "bad_request", "", "invalid JSON body: more than one value")
		return false
	}
	return true
}

func (a *API) createCase(w http.ResponseWriter, r *http.Request) {
	var in CaseInput
	if !decode(w, r, &in) {
		return
	}
	c, invs, err := a.svc.CreateCase(r.Context(), a.meta(r), in)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if invs == nil {
		invs = []Invite{}
	}
	writeJSON(w, http.StatusCreated, map[string]any{"case": c, "invites": invs})
}

func (a *API) getCase(w http.ResponseWriter, r *http.Request) {
	v, err := a.svc.GetCase(r.Context(), r.PathValue("ref"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *API) listInvites(w http.ResponseWriter, r *http.Request) {
	all := r.URL.Query().Get("all") == "true"
	invs, err := a.svc.ListInvites(r.Context(), r.PathValue("ref"), all)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if invs == nil {
		invs = []Invite{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"invites": invs})
}

func (a *API) invite(w http.ResponseWriter, r *http.Request) {
	var in InviteInput
	if !decode(w, r, &in) {
		return
	}
	in.CaseRef = r.PathValue("ref")
	inv, err := a.svc.Invite(r.Context(), a.meta(r), in)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, inv)
}

// setExpiry: {"expiresAt": "RFC 3339"} or {"expiresAt": null} (no expiry).
func (a *API) setExpiry(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ExpiresAt json.RawMessage `json:"expiresAt"`
	}
	if !decode(w, r, &in) {
		return
	}
	if len(in.ExpiresAt) == 0 {
		writeErr(w, http.StatusBadRequest, "invalid", "expiresAt", "expiresAt is required (a time, or null for no expiry)")
		return
	}
	var exp *time.Time
	if !bytes.Equal(bytes.TrimSpace(in.ExpiresAt), []byte("null")) {
		var t time.Time
		if err := json.Unmarshal(in.ExpiresAt, &t); err != nil {
			writeErr(w, http.StatusBadRequest, "invalid", "expiresAt", "expiresAt: want an RFC 3339 time or null: "+err.Error())
			return
		}
		exp = &t
	}
	inv, err := a.svc.SetExpiry(r.Context(), a.meta(r), r.PathValue("ref"), r.PathValue("id"), exp)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, inv)
}

func (a *API) revoke(w http.ResponseWriter, r *http.Request) {
	inv, err := a.svc.Revoke(r.Context(), a.meta(r), r.PathValue("ref"), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, inv)
}

func (a *API) addGroup(w http.ResponseWriter, r *http.Request) {
	var in GroupInput
	if !decode(w, r, &in) {
		return
	}
	g, err := a.svc.AddGroupGrant(r.Context(), a.meta(r), r.PathValue("ref"), in)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, g)
}

func (a *API) removeGroup(w http.ResponseWriter, r *http.Request) {
	g, n, err := a.svc.RemoveGroupGrant(r.Context(), a.meta(r), r.PathValue("ref"), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"removed": g, "retainedUsers": n})
}

func (a *API) addDomain(w http.ResponseWriter, r *http.Request) {
	var in DomainInput
	if !decode(w, r, &in) {
		return
	}
	g, err := a.svc.AddDomainGrant(r.Context(), a.meta(r), r.PathValue("ref"), in)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, g)
}

func (a *API) removeDomain(w http.ResponseWriter, r *http.Request) {
	g, n, err := a.svc.RemoveDomainGrant(r.Context(), a.meta(r), r.PathValue("ref"), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"removed": g, "retainedUsers": n})
}

func (a *API) decide(w http.ResponseWriter, r *http.Request) {
	d, err := a.svc.Decide(r.Context(), a.meta(r), r.PathValue("ref"), r.PathValue("user"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (a *API) listAccess(w http.ResponseWriter, r *http.Request) {
	as, err := a.svc.ListAccess(r.Context(), r.PathValue("ref"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"access": as})
}
