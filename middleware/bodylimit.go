package middleware

import (
	"fmt"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	apierrors "github.com/gatekit/gatekit/errors"
)

// BodyLimitConfig configures [BodyLimitWithConfig].
type BodyLimitConfig struct {
	// Skipper skips the middleware for a request when it returns true.
	// Default: never skip.
	Skipper middleware.Skipper
	// Limit is the most bytes a request body may hold. Required unless
	// LimitFor is set: without LimitFor, a Limit of zero or less is a
	// configuration error.
	Limit int64
	// LimitFor, when set, chooses the limit per request (for example by
	// route), returning a negative value for no limit and 0 to use Limit
	// (no limit when Limit is not positive either).
	LimitFor func(c echo.Context) int64
}

// BodyLimit rejects request bodies over limit bytes with 413
// payload_too_large. It panics when limit is not positive; use
// [BodyLimitWithConfig] to get an error instead.
func BodyLimit(limit int64) echo.MiddlewareFunc {
	return mustMiddleware(BodyLimitWithConfig(BodyLimitConfig{Limit: limit}))
}

// BodyLimitWithConfig rejects request bodies over the limit with 413
// payload_too_large naming the limit. A Content-Length over the limit is
// rejected before the body is read; a chunked or lying body is cut off at
// the limit, having read at most limit+1 bytes, and the handler's error
// (whatever a JSON decoder or multipart parser made of the cut) becomes the
// 413. It works the same for JSON and multipart uploads.
func BodyLimitWithConfig(cfg BodyLimitConfig) (echo.MiddlewareFunc, error) {
	return cfg.ToMiddleware()
}

// ToMiddleware builds the middleware described by cfg; it fails when
// neither a positive Limit nor LimitFor is given.
func (cfg BodyLimitConfig) ToMiddleware() (echo.MiddlewareFunc, error) {
	s, err := cfg.ToStep()
	if err != nil {
		return nil, err
	}
	return stepMiddleware(s), nil
}

// ToStep builds the middleware described by cfg as a Step for [Chain].
func (cfg BodyLimitConfig) ToStep() (Step, error) {
	if cfg.Limit <= 0 && cfg.LimitFor == nil {
		return nil, fmt.Errorf("body limit: Limit must be positive, got %d", cfg.Limit)
	}
	if cfg.Skipper == nil {
		cfg.Skipper = middleware.DefaultSkipper
	}
	return func(c echo.Context, next echo.HandlerFunc) error {
		if cfg.Skipper(c) {
			return next(c)
		}
		limit := cfg.Limit
		if cfg.LimitFor != nil {
			if l := cfg.LimitFor(c); l < 0 {
				return next(c)
			} else if l > 0 {
				limit = l
			}
		}
		if limit <= 0 {
			return next(c)
		}
		return limitBody(c, next, limit)
	}, nil
}

// limitBody runs next with the request body capped at limit bytes.
func limitBody(c echo.Context, next echo.HandlerFunc, limit int64) error {
	req := c.Request()
	if req.ContentLength > limit {
		// The client may be sending the body still: none of it is read.
		endConnection(c)
		return apierrors.PayloadTooLarge(limit)
	}
	if req.Body == nil || req.Body == http.NoBody {
		return next(c)
	}
	var lr *limitedBody
	if cc, ok := c.(*chainContext); ok {
		lr = &cc.state.body
	} else {
		lr = new(limitedBody)
	}
	*lr = limitedBody{rc: req.Body, left: limit, limit: limit, c: c}
	req.Body = lr
	err := next(c)
	if lr.exceeded && err != nil {
		return apierrors.PayloadTooLarge(limit)
	}
	return err
}

// limitedBody passes through at most limit bytes; reading past them fails
// with *http.MaxBytesError and marks the request as over the limit. It reads
// one byte beyond the limit, no more, to tell "exactly the limit" from
// "over it". Going over the limit, or any failed read, ends the connection
// after the response ([endConnection]), whoever reads the body.
type limitedBody struct {
	rc       io.ReadCloser
	left     int64
	limit    int64
	exceeded bool
	c        echo.Context
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.exceeded {
		return 0, &http.MaxBytesError{Limit: l.limit}
	}
	if len(p) == 0 {
		return 0, nil
	}
	if l.left <= 0 {
		var one [1]byte
		n, err := l.rc.Read(one[:])
		if n > 0 {
			l.exceeded = true
			endConnection(l.c)
			return 0, &http.MaxBytesError{Limit: l.limit}
		}
		if err != nil && err != io.EOF {
			endConnection(l.c)
		}
		return 0, err
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.rc.Read(p)
	l.left -= int64(n)
	if err != nil && err != io.EOF {
		endConnection(l.c)
	}
	return n, err
}

func (l *limitedBody) Close() error { return l.rc.Close() }
