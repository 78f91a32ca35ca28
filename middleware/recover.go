package middleware

import (
	"fmt"
	"net/http"
	"runtime"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	apierrors "github.com/gatekit/gatekit/errors"
)

// PanicError is the cause of the internal_error a recovered panic becomes.
// The error handler logs it with its stack; the client sees only the
// catalog's internal_error message.
type PanicError struct {
	// Value is what was passed to panic.
	Value any
	// Stack is the panicking goroutine's stack.
	Stack []byte
}

// Error describes the panic value.
func (p *PanicError) Error() string { return fmt.Sprintf("panic: %v", p.Value) }

// Unwrap returns the panic value when it is an error.
func (p *PanicError) Unwrap() error {
	if err, ok := p.Value.(error); ok {
		return err
	}
	return nil
}

// RecoverConfig configures [RecoverWithConfig].
type RecoverConfig struct {
	// Skipper skips the middleware for a request when it returns true.
	// Default: never skip.
	Skipper middleware.Skipper
	// StackSize is the most bytes of stack kept. Default: 8 KiB.
	StackSize int
}

// DefaultRecoverConfig keeps 8 KiB of stack.
var DefaultRecoverConfig = RecoverConfig{StackSize: 8 << 10}

// Recover turns a panic into 500 internal_error, with
// [DefaultRecoverConfig].
func Recover() echo.MiddlewareFunc {
	return mustMiddleware(RecoverWithConfig(DefaultRecoverConfig))
}

// RecoverWithConfig turns a panic in a later handler into an
// *apierrors.Error (500 internal_error) whose cause is a [*PanicError], so
// the error handler logs the stack and the server stays up.
// http.ErrAbortHandler is re-raised: it is net/http's way to abort a
// response on purpose.
func RecoverWithConfig(cfg RecoverConfig) (echo.MiddlewareFunc, error) {
	return cfg.ToMiddleware()
}

// ToMiddleware builds the middleware described by cfg.
func (cfg RecoverConfig) ToMiddleware() (echo.MiddlewareFunc, error) {
	s, err := cfg.ToStep()
	if err != nil {
		return nil, err
	}
	return stepMiddleware(s), nil
}

// ToStep builds the middleware described by cfg as a Step for [Chain].
func (cfg RecoverConfig) ToStep() (Step, error) {
	if cfg.Skipper == nil {
		cfg.Skipper = middleware.DefaultSkipper
	}
	if cfg.StackSize <= 0 {
		cfg.StackSize = DefaultRecoverConfig.StackSize
	}
	return func(c echo.Context, next echo.HandlerFunc) (err error) {
		if cfg.Skipper(c) {
			return next(c)
		}
		defer func() {
			r := recover()
			if r == nil {
				return
			}
			if r == http.ErrAbortHandler {
				panic(r)
			}
			stack := make([]byte, cfg.StackSize)
			stack = stack[:runtime.Stack(stack, false)]
			err = apierrors.InternalError(&PanicError{Value: r, Stack: stack})
		}()
		return next(c)
	}, nil
}
