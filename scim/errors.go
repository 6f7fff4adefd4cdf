package scim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/dirsyncd/dirsyncd/store"
	"go.uber.org/zap"
)

// SCIM error types (RFC 7644 §3.12).
const (
	TypeInvalidFilter = "invalidFilter"
	TypeTooMany       = "tooMany"
	TypeUniqueness    = "uniqueness"
	TypeMutability    = "mutability"
	TypeInvalidSyntax = "invalidSyntax"
	TypeInvalidPath   = "invalidPath"
	TypeNoTarget      = "noTarget"
	TypeInvalidValue  = "invalidValue"
	TypeInvalidVers   = "invalidVers"
)

// Error is an error with its SCIM response: HTTP status and scimType.
type Error struct {
	Status   int
	ScimType string
	Detail   string
}

func (e *Error) Error() string {
	if e.ScimType != "" {
		return fmt.Sprintf("scim: %d %s: %s", e.Status, e.ScimType, e.Detail)
	}
	return fmt.Sprintf("scim: %d: %s", e.Status, e.Detail)
}

func badRequest(scimType, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, ScimType: scimType, Detail: fmt.Sprintf(format, args...)}
}

func notFound(what, id string) *Error {
	return &Error{Status: http.StatusNotFound, Detail: fmt.Sprintf("%s %q not found", what, id)}
}

// errorResponse maps any error to its SCIM error: the one function that
// decides statuses. Store sentinels become 404/409/412; anything unknown is
// a 500 whose detail reveals nothing (the cause is logged).
func errorResponse(err error) (*Error, bool) {
	var se *Error
	switch {
	case errors.As(err, &se):
		return se, false
	case errors.Is(err, store.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Detail: "resource not found"}, false
	case errors.Is(err, store.ErrConflict):
		return &Error{Status: http.StatusConflict, ScimType: TypeUniqueness, Detail: "userName, e-mail or displayName is already taken"}, false
	case errors.Is(err, store.ErrInvalidFilter):
		return &Error{Status: http.StatusBadRequest, ScimType: TypeInvalidFilter, Detail: "filter or sortBy is not supported"}, false
	case errors.Is(err, store.ErrVersionMismatch):
		return &Error{Status: http.StatusPreconditionFailed, Detail: "resource version does not match If-Match"}, false
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &Error{Status: http.StatusServiceUnavailable, Detail: "request cancelled or timed out"}, true
	}
	return &Error{Status: http.StatusInternalServerError, Detail: "internal error"}, true
}

type errorBody struct {
	Schemas  []string `json:"schemas"`
	Status   string   `json:"status"`
	ScimType string   `json:"scimType,omitempty"`
	Detail   string   `json:"detail,omitempty"`
}

const errorSchema = "urn:ietf:params:scim:api:messages:2.0:Error"

func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e, internal := errorResponse(err)
	if internal {
		h.log.Error("request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path),
			zap.String("request_id", requestID(r)), zap.Error(err))
	}
	writeErrorBody(w, e)
}

func writeErrorBody(w http.ResponseWriter, e *Error) {
	b, _ := json.Marshal(errorBody{Schemas: []string{errorSchema}, Status: strconv.Itoa(e.Status), ScimType: e.ScimType, Detail: e.Detail})
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(e.Status)
	_, _ = w.Write(b)
}
