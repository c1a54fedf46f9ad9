// Package apperr is paypage's one coded error type. An error carries a stable
// code (invalid, not_found, conflict, ...) that the HTTP layer turns into a
// status; anything without a code is internal, and its text never reaches a
// client.
package apperr

import (
	"errors"
	"fmt"
)

// Codes shared by every package. The web package maps each to an HTTP status.
const (
	Invalid      = "invalid"      // bad input; nothing changed
	NotFound     = "not_found"    // no such record (or not visible to the caller)
	Conflict     = "conflict"     // a concurrent change or a state that forbids the operation
	Unavailable  = "unavailable"  // a dependency is down; retry later
	Unauthorized = "unauthorized" // missing or wrong credential
	Forbidden    = "forbidden"    // a credential that may not do this
	RateLimited  = "rate_limited" // too many attempts
	Internal     = "internal"     // a bug or an unexpected failure
	IdemMismatch = "idempotency_mismatch"
	InProgress   = "idempotency_in_progress" // an earlier try of the same request still runs; retry
	TokenDeleted = "token_deleted"           // a token whose card the retention policy deleted
)

// Error is an error with a code. Message is safe to show to a client: it must
// never hold card data or secrets. Param names the offending input field.
type Error struct {
	Code    string
	Message string
	Param   string
	Err     error // the cause, for logs; never shown to clients
}

func (e *Error) Error() string {
	s := e.Code + ": " + e.Message
	if e.Param != "" {
		s += " (" + e.Param + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is matches another *Error by code, so errors.Is(err, apperr.E(NotFound, "")) works.
func (e *Error) Is(target error) bool {
	var t *Error
	if errors.As(target, &t) {
		return t.Code == e.Code && (t.Message == "" || t.Message == e.Message)
	}
	return false
}

// E returns a coded error with a formatted message.
func E(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Field returns an invalid-input error about one named field.
func Field(param, format string, args ...any) *Error {
	return &Error{Code: Invalid, Param: param, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns a coded error around a cause.
func Wrap(code string, err error, format string, args ...any) *Error {
	return &Error{Code: code, Err: err, Message: fmt.Sprintf(format, args...)}
}

// Code returns the code of err, Internal for an uncoded error, "" for nil.
func Code(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// Message returns the client-safe message of err; uncoded errors get a generic text.
func Message(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Code != Internal {
		return e.Message
	}
	return "an internal error occurred"
}

// Param returns the input field err is about, if any.
func Param(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Param
	}
	return ""
}

// Is reports whether err carries the given code.
func Is(err error, code string) bool { return Code(err) == code }
