package audience

import (
	"errors"
	"fmt"
)

// Error is a client error: bad input, a missing object or a conflict. The
// HTTP handler maps Kind to a status and Code to the JSON error code.
type Error struct {
	Kind    Kind
	Code    string // stable machine-readable code
	Message string
}

// Kind classifies an Error.
type Kind int

// Kinds of Error.
const (
	Invalid  Kind = iota // 400
	NotFound             // 404
	Conflict             // 409
)

func (e *Error) Error() string { return e.Message }

func invalid(code, format string, args ...any) error {
	return &Error{Kind: Invalid, Code: code, Message: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &Error{Kind: NotFound, Code: "not_found", Message: fmt.Sprintf(format, args...)}
}

func conflict(code, format string, args ...any) error {
	return &Error{Kind: Conflict, Code: code, Message: fmt.Sprintf(format, args...)}
}

// IsKind reports whether err is an *Error of kind k.
func IsKind(err error, k Kind) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == k
}

func asError(err error, target **Error) bool { return errors.As(err, target) }
