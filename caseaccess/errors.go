package caseaccess

import (
	"errors"
	"fmt"
)

// ErrorKind classifies a refused request.
type ErrorKind int

// Error kinds (the API maps them to 400, 404, 409, 403).
const (
	KindInvalid ErrorKind = iota + 1
	KindNotFound
	KindConflict
	KindForbidden
)

// Error is a refused request: bad input naming the field, nothing written.
type Error struct {
	Kind  ErrorKind
	Field string // the request field at fault, e.g. "expiresAt"
	Msg   string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return "caseaccess: " + e.Msg
	}
	return "caseaccess: " + e.Field + ": " + e.Msg
}

func invalid(field, format string, args ...any) *Error {
	return &Error{Kind: KindInvalid, Field: field, Msg: fmt.Sprintf(format, args...)}
}

func notFound(field, format string, args ...any) *Error {
	return &Error{Kind: KindNotFound, Field: field, Msg: fmt.Sprintf(format, args...)}
}

func conflict(field, format string, args ...any) *Error {
	return &Error{Kind: KindConflict, Field: field, Msg: fmt.Sprintf(format, args...)}
}

func forbidden(field, format string, args ...any) *Error {
	return &Error{Kind: KindForbidden, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// AsError returns the *Error in err's chain, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
