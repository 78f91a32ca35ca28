package middleware

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"unsafe"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	apierrors "github.com/gatekit/gatekit/errors"
)

// HeaderRequestID is the header a request id travels in, both ways.
const HeaderRequestID = "X-Request-Id"

// MaxRequestIDLength is the longest inbound request id that is accepted;
// a longer one is replaced by a generated id.
const MaxRequestIDLength = 128

// RequestIDConfig configures [RequestIDWithConfig].
type RequestIDConfig struct {
	// Skipper skips the middleware for a request when it returns true.
	// Default: never skip.
	Skipper middleware.Skipper
	// TrustInbound accepts a well-formed X-Request-Id sent by the client
	// (at most MaxRequestIDLength characters of letters, digits, '-', '_',
	// '.' and ':'). Default (zero value): false; DefaultRequestIDConfig
	// sets it, so ids follow a request across services.
	TrustInbound bool
	// Generator returns a new id. Default: "req_" followed by 24 random
	// hex digits.
	Generator func() string
	// ShapeFor, when set, returns the error layout of c's route; where it
	// is apierrors.ShapeAnthropic, the id is also sent as request-id
	// (apierrors.HeaderAnthropicRequestID), the header Anthropic's SDKs
	// read, on every response: success, error and stream. It must not
	// allocate.
	ShapeFor func(c echo.Context) apierrors.Shape
}

// DefaultRequestIDConfig trusts well-formed inbound ids and generates the
// rest.
var DefaultRequestIDConfig = RequestIDConfig{TrustInbound: true}

// RequestID gives every request an id, with [DefaultRequestIDConfig].
func RequestID() echo.MiddlewareFunc {
	return mustMiddleware(RequestIDWithConfig(DefaultRequestIDConfig))
}

// RequestIDWithConfig gives every request an id: the inbound X-Request-Id
// when it is trusted and well formed, otherwise a generated one. The id is
// set on the response's X-Request-Id header, where [GetRequestID] reads it
// for handlers, logs and the error handler.
func RequestIDWithConfig(cfg RequestIDConfig) (echo.MiddlewareFunc, error) {
	return cfg.ToMiddleware()
}

// ToMiddleware builds the middleware described by cfg.
func (cfg RequestIDConfig) ToMiddleware() (echo.MiddlewareFunc, error) {
	s, err := cfg.ToStep()
	if err != nil {
		return nil, err
	}
	return stepMiddleware(s), nil
}

// ToStep builds the middleware described by cfg as a Step for [Chain].
func (cfg RequestIDConfig) ToStep() (Step, error) {
	if cfg.Skipper == nil {
		cfg.Skipper = middleware.DefaultSkipper
	}
	generated := cfg.Generator == nil
	if generated {
		cfg.Generator = newRequestID
	}
	return func(c echo.Context, next echo.HandlerFunc) error {
		if cfg.Skipper(c) {
			return next(c)
		}
		h := c.Response().Header()
		// Both headers share one clipped slice: an Add on either copies
		// it, so neither can change the other, and the second costs no
		// allocation.
		anthropic := cfg.ShapeFor != nil && cfg.ShapeFor(c) == apierrors.ShapeAnthropic
		if cfg.TrustInbound {
			if v := c.Request().Header[HeaderRequestID]; len(v) == 1 && ValidRequestID(v[0]) {
				// The inbound slice is reused, clipped so that an Add on
				// the response cannot write into the request's.
				h[HeaderRequestID] = v[:1:1]
				if anthropic {
					h[apierrors.HeaderAnthropicRequestID] = v[:1:1]
				}
				return next(c)
			}
		}
		if cc, ok := c.(*chainContext); ok {
			st := &cc.state
			if generated && st.requestID[0] == "" {
				// The id's text lives in the request's record, which is
				// never reused, and is written once: no allocation of
				// its own.
				fillRequestID(&st.requestIDText)
				st.requestID[0] = unsafe.String(&st.requestIDText[0], len(st.requestIDText))
			} else {
				st.requestID[0] = cfg.Generator()
			}
			h[HeaderRequestID] = st.requestID[:1:1]
		} else {
			h[HeaderRequestID] = []string{cfg.Generator()}
		}
		if anthropic {
			h[apierrors.HeaderAnthropicRequestID] = h[HeaderRequestID]
		}
		return next(c)
	}, nil
}

// GetRequestID returns the id [RequestID] gave the request, or "" when the
// middleware did not run.
func GetRequestID(c echo.Context) string {
	if cc, ok := c.(*chainContext); ok && cc.state.requestID[0] != "" {
		return cc.state.requestID[0]
	}
	if v := c.Response().Header()[HeaderRequestID]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// ValidRequestID reports whether id may be accepted from a client: 1 to
// MaxRequestIDLength characters of letters, digits, '-', '_', '.' and ':'.
// Anything else (spaces, quotes, control characters, non-ASCII) could
// corrupt logs or headers and is replaced.
func ValidRequestID(id string) bool {
	if len(id) == 0 || len(id) > MaxRequestIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		b := id[i]
		switch {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9', b == '-', b == '_', b == '.', b == ':':
		default:
			return false
		}
	}
	return true
}

// newRequestID returns "req_" + 24 random hex digits (96 bits from the
// runtime's ChaCha8 source): unique with overwhelming probability across
// processes, without a system call per request, and revealing nothing
// about the service's traffic the way a counter would.
func newRequestID() string {
	var buf [requestIDLength]byte
	fillRequestID(&buf)
	return string(buf[:])
}

// requestIDLength is the length of a generated id.
const requestIDLength = 4 + 24

// fillRequestID writes a new id to buf.
func fillRequestID(buf *[requestIDLength]byte) {
	copy(buf[:], "req_")
	var raw [12]byte
	binary.LittleEndian.PutUint64(raw[:8], rand.Uint64())
	binary.LittleEndian.PutUint32(raw[8:], rand.Uint32())
	hex.Encode(buf[4:], raw[:])
}

// mustMiddleware unwraps a constructor that cannot fail with its default
// configuration; it panics only on a programming error in this package.
func mustMiddleware(mw echo.MiddlewareFunc, err error) echo.MiddlewareFunc {
	if err != nil {
		panic(err)
	}
	return mw
}
