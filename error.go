package flotilla

import (
	"errors"
	"fmt"
	"time"
)

// Error codes. Each maps to exactly one HTTP status in the API layer.
const (
	EInvalid       = "invalid"        // 400: the request is malformed or fails validation
	EUnauthorized  = "unauthorized"   // 401: no or bad credentials
	EForbidden     = "forbidden"      // 403: credentials lack a scope
	ENotFound      = "not_found"      // 404
	EConflict      = "conflict"       // 409: the resource exists or is in use
	EGone          = "gone"           // 410: the resource is no longer active
	ETooLarge      = "too_large"      // 413
	ERange         = "range"          // 416
	EUnavailable   = "unavailable"    // 503: a dependency is down
	EInternal      = "internal"       // 500
	EPrecondition  = "precondition"   // 412
	ENotAcceptable = "not_acceptable" // 406
	EBadGateway    = "bad_gateway"    // 502: a device the server talks to failed
	ETooMany       = "too_many"       // 429: a quota or rate limit is reached
	ENoSpace       = "no_space"       // 507: the disk is full
)

// Error is a failure a caller can act on. Message is safe to show to users.
type Error struct {
	Code    string
	Message string
	// RetryAfter, when set, is how long the caller should wait before
	// trying again (a rate limit).
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// RetryAfter returns how long err asks its caller to wait, or 0.
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// ErrorCode returns the code of the first *Error in err's chain, EInternal
// for any other non-nil error and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// ErrorMessage returns the user-facing message of err: the message of its
// *Error, or "internal error" so that causes stay in the logs.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// IsCode reports whether err carries the given code.
func IsCode(err error, code string) bool { return err != nil && ErrorCode(err) == code }
