// Package wire holds what every Flotilla HTTP surface shares: the JSON error
// envelope and the one place error codes become status codes, strict JSON
// request decoding, and artifact downloads with ranges.
package wire

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/api"
	"github.com/flotilla-ota/flotilla/internal/blob"
)

// Status maps an error code to its HTTP status.
func Status(code string) int {
	switch code {
	case flotilla.EInvalid:
		return http.StatusBadRequest
	case flotilla.EUnauthorized:
		return http.StatusUnauthorized
	case flotilla.EForbidden:
		return http.StatusForbidden
	case flotilla.ENotFound:
		return http.StatusNotFound
	case flotilla.EConflict:
		return http.StatusConflict
	case flotilla.EGone:
		return http.StatusGone
	case flotilla.ETooLarge:
		return http.StatusRequestEntityTooLarge
	case flotilla.ERange:
		return http.StatusRequestedRangeNotSatisfiable
	case flotilla.EUnavailable:
		return http.StatusServiceUnavailable
	case flotilla.EPrecondition:
		return http.StatusPreconditionFailed
	case flotilla.ENotAcceptable:
		return http.StatusNotAcceptable
	case flotilla.EBadGateway:
		return http.StatusBadGateway
	case flotilla.ETooMany:
		return http.StatusTooManyRequests
	case flotilla.ENoSpace:
		return http.StatusInsufficientStorage
	}
	return http.StatusInternalServerError
}

// Error writes err as the JSON envelope. Internal errors are logged with
// their cause and shown to the client only as "internal error".
func Error(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	code := flotilla.ErrorCode(err)
	status := Status(code)
	if status >= 500 && log != nil {
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if d := flotilla.RetryAfter(err); d > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((d+time.Second-1)/time.Second)))
	}
	if status == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="flotilla"`)
	}
	var body api.Error
	body.Error.Code = code
	body.Error.Message = flotilla.ErrorMessage(err)
	JSON(w, status, body)
}

// JSON writes v with the given status.
func JSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, `{"error":{"code":"internal","message":"internal error"}}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// MaxJSONBody bounds JSON request bodies.
const MaxJSONBody = 1 << 20

// Decode reads a JSON body into v strictly: unknown fields, trailing data,
// wrong types and oversize bodies are EInvalid errors that say what to fix.
func Decode(r *http.Request, v any) error {
	return decode(r, v, true)
}

// DecodeLenient is Decode that ignores unknown fields, for device protocols
// whose old clients send fields we no longer use.
func DecodeLenient(r *http.Request, v any) error {
	return decode(r, v, false)
}

func decode(r *http.Request, v any, strict bool) error {
	// The Content-Type is not checked: curl -d sends a form type with JSON
	// in it, and a body that is not JSON fails below with a clear message.
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxJSONBody+1))
	if err != nil {
		return flotilla.Errorf(flotilla.EInvalid, "reading request body: %v", err)
	}
	if len(body) > MaxJSONBody {
		return flotilla.Errorf(flotilla.ETooLarge, "JSON body exceeds %d bytes", MaxJSONBody)
	}
	return DecodeBytes(body, v, strict)
}

// DecodeBytes is the decoding behind Decode, exposed for fuzzing.
func DecodeBytes(body []byte, v any, strict bool) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return flotilla.Errorf(flotilla.EInvalid, "request body is empty; send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return flotilla.Errorf(flotilla.EInvalid, "invalid JSON body: %s", describeJSONError(err))
	}
	if dec.More() {
		return flotilla.Errorf(flotilla.EInvalid, "invalid JSON body: unexpected data after the JSON object")
	}
	return nil
}

func describeJSONError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("field %q must be %s, not %s", te.Field, jsonKind(te.Type.String()), te.Value)
		}
		return fmt.Sprintf("expected %s, not %s", jsonKind(te.Type.String()), te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON is cut off"
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return "unknown field " + f
	}
	return strings.TrimPrefix(msg, "json: ")
}

func jsonKind(goType string) string {
	switch {
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "struct"), strings.Contains(goType, "."):
		return "an object"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "a boolean"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"), strings.HasPrefix(goType, "float"):
		return "a number"
	}
	return goType
}

// Filer is implemented by blob objects backed by a local file, which lets
// downloads use sendfile.
type Filer interface {
	OSFile() *os.File
}

// ServeBlob serves an open blob with Range, If-Range, HEAD, ETag (the
// quoted sha256) and Last-Modified, via http.ServeContent.
func ServeBlob(w http.ResponseWriter, r *http.Request, obj blob.Object, filename, contentType string) {
	info := obj.Info()
	h := w.Header()
	h.Set("ETag", `"`+info.Key+`"`)
	h.Set("Accept-Ranges", "bytes")
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	h.Set("Content-Type", contentType)
	if filename != "" {
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": filename}))
	}
	var rs io.ReadSeeker = obj
	if f, ok := obj.(Filer); ok {
		rs = f.OSFile()
	}
	modTime := info.ModTime
	if modTime.IsZero() {
		modTime = time.Unix(0, 0)
	}
	http.ServeContent(w, r, "", modTime, rs)
}

// BaseURL is the externally visible base URL: public if configured,
// otherwise derived from the request (honouring X-Forwarded-Proto).
func BaseURL(public string, r *http.Request) string {
	if public != "" {
		return strings.TrimRight(public, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		scheme = p
	}
	return scheme + "://" + r.Host
}

// RateLimited is the error of a caller over a rate limit: 429 with
// Retry-After.
func RateLimited(format, subject string, wait time.Duration) error {
	e := flotilla.Errorf(flotilla.ETooMany, format+"; retry in %s", subject, wait.Round(time.Millisecond))
	e.RetryAfter = wait
	return e
}

// ClientIP is the address a request came from. Behind a reverse proxy the
// server sees the proxy's; the proxy-aware address, when trusted proxies
// are configured, is set by the server before handlers run (see
// WithClientIP).
func ClientIP(r *http.Request) string {
	if ip, ok := r.Context().Value(clientIPKey{}).(string); ok {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

type clientIPKey struct{}
type trustedProxyKey struct{}
type clientCertKey struct{}

// WithClientCert records the common name of a client certificate the
// server verified against its client CA.
func WithClientCert(r *http.Request, cn string) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), clientCertKey{}, cn))
}

// ClientCertCN is the common name of the request's verified client
// certificate, or "".
func ClientCertCN(r *http.Request) string {
	cn, _ := r.Context().Value(clientCertKey{}).(string)
	return cn
}

// WithClientIP records the client's address for ClientIP, and whether the
// request came through a trusted reverse proxy (FromTrustedProxy).
func WithClientIP(r *http.Request, ip string, viaTrustedProxy bool) *http.Request {
	ctx := context.WithValue(r.Context(), clientIPKey{}, ip)
	if viaTrustedProxy {
		ctx = context.WithValue(ctx, trustedProxyKey{}, true)
	}
	return r.WithContext(ctx)
}

// FromTrustedProxy reports whether the request came from a reverse proxy
// the server trusts (--trusted-proxy): only then do its client-certificate
// and forwarding headers count.
func FromTrustedProxy(r *http.Request) bool {
	v, _ := r.Context().Value(trustedProxyKey{}).(bool)
	return v
}
