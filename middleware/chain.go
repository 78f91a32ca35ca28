package middleware

import (
	"fmt"

	"github.com/labstack/echo/v4"
)

// Step is one middleware in the form [Chain] composes: it does its part of
// the request and calls next to go on (or returns without calling it).
type Step func(c echo.Context, next echo.HandlerFunc) error

// Chain composes steps into one Echo middleware that runs them in order.
// Echo v4 rebuilds its middleware chain on every request, allocating a
// closure per middleware; a Chain allocates once per request whatever the
// number of steps, and that one allocation also holds the request's
// gatekit record (principal, usage, budget hold), so no step allocates for
// it. Handlers behind a Chain receive a context that wraps Echo's; every
// echo.Context method works on it as usual.
func Chain(steps ...Step) (echo.MiddlewareFunc, error) {
	for i, s := range steps {
		if s == nil {
			return nil, fmt.Errorf("chain: step %d is nil", i)
		}
	}
	if len(steps) == 0 {
		return func(next echo.HandlerFunc) echo.HandlerFunc { return next }, nil
	}
	// conts[i] continues with step i+1, or the handler after the last one.
	// They are built once: each finds the request's handler in its context,
	// so nothing is allocated per request to link the steps.
	conts := make([]echo.HandlerFunc, len(steps))
	for i := range steps {
		if i == len(steps)-1 {
			conts[i] = func(c echo.Context) error {
				return c.(*chainContext).handler(c)
			}
			continue
		}
		step, cont := steps[i+1], &conts[i+1]
		conts[i] = func(c echo.Context) error { return step(c, *cont) }
	}
	first, firstCont := steps[0], conts[0]
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			cc := &chainContext{Context: c, handler: next}
			return first(cc, firstCont)
		}
	}, nil
}

// chainContext is the context a Chain hands on: Echo's own, the handler the
// chain leads to, and the request's record.
type chainContext struct {
	echo.Context
	handler echo.HandlerFunc
	state   requestState
}

// stepMiddleware adapts a Step to an ordinary Echo middleware.
func stepMiddleware(s Step) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error { return s(c, next) }
	}
}
