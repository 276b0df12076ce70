package tally

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Error codes. Every error a client can see carries one; the gateway and the
// regional intake map them to HTTP status in one table each.
const (
	EINVALID      = "invalid"      // bad input; never retry
	ENOTFOUND     = "not_found"    // the named thing does not exist
	ECONFLICT     = "conflict"     // e.g. a stale correction
	ETOOLARGE     = "too_large"    // body or batch over its limit
	EUNAVAILABLE  = "unavailable"  // a dependency is down; retry later
	EUNAUTHORIZED = "unauthorized" // no or bad credentials
	EFORBIDDEN    = "forbidden"    // credentials do not allow this
	ERATELIMIT    = "rate_limited" // too many requests; retry after a pause
	EINTERNAL     = "internal"     // anything we did not classify
)

// Error is an error with a code and a message that is safe to show users.
type Error struct {
	Code    string
	Message string
}

// Error implements the error interface.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain: "" for a
// nil error and EINTERNAL for an error without a code.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the user-facing message of err: the message of its
// *Error, or "internal error" for an error without a code.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// ErrorBody is the JSON shape of every error Tally answers, over HTTP or as
// a NATS reply: {"error":{"code":"...","message":"..."}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the code and user-facing message of an ErrorBody.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ErrorReply returns the ErrorBody of err: its code and its message safe to
// show users (see ErrorCode and ErrorMessage).
func ErrorReply(err error) ErrorBody {
	return ErrorBody{Error: ErrorDetail{Code: ErrorCode(err), Message: ErrorMessage(err)}}
}

// httpStatus maps error codes to HTTP status: the one table every HTTP
// listener of Tally answers by. A code not here is a 500.
var httpStatus = map[string]int{
	EINVALID:      http.StatusBadRequest,
	EUNAUTHORIZED: http.StatusUnauthorized,
	EFORBIDDEN:    http.StatusForbidden,
	ENOTFOUND:     http.StatusNotFound,
	ECONFLICT:     http.StatusConflict,
	ETOOLARGE:     http.StatusRequestEntityTooLarge,
	EUNAVAILABLE:  http.StatusServiceUnavailable,
	ERATELIMIT:    http.StatusTooManyRequests,
}

// HTTPStatus returns the HTTP status for an error code; 500 for EINTERNAL
// and any code without one.
func HTTPStatus(code string) int {
	if s, ok := httpStatus[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// CodeForHTTPStatus names an HTTP status as an error code, for errors raised
// by the HTTP framework itself: the code that maps to the status where there
// is one, EINTERNAL for a 5xx, else the status text in snake case
// ("method_not_allowed").
func CodeForHTTPStatus(status int) string {
	for code, s := range httpStatus {
		if s == status {
			return code
		}
	}
	if status >= 500 {
		return EINTERNAL
	}
	if t := http.StatusText(status); t != "" {
		return strings.ReplaceAll(strings.ToLower(t), " ", "_")
	}
	return EINTERNAL
}
