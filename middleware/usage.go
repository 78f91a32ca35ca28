package middleware

import (
	"context"
	"fmt"

	"github.com/labstack/echo/v4"

	apierrors "github.com/gatekit/gatekit/errors"
)

// Usage is what a request consumed, as the handler reports it with
// [ReportUsage]. Token limits charge it; budgets price it.
type Usage struct {
	// Model is the model that served the request, when it matters for
	// pricing.
	Model string
	// PromptTokens counts input tokens.
	PromptTokens int64
	// CompletionTokens counts output tokens.
	CompletionTokens int64
}

// TotalTokens is PromptTokens + CompletionTokens.
func (u Usage) TotalTokens() int64 { return u.PromptTokens + u.CompletionTokens }

// ReportUsage records what the request consumed. Handlers call it once,
// when the usage is known (for a stream, before its last event); the
// middleware that charges tokens and settles budgets reads it after the
// handler returns. A second call, or negative counts, is an error and
// changes nothing.
func ReportUsage(c echo.Context, u Usage) error {
	if u.PromptTokens < 0 || u.CompletionTokens < 0 {
		return fmt.Errorf("report usage: negative token count (%d prompt, %d completion)", u.PromptTokens, u.CompletionTokens)
	}
	st := state(c)
	if st.usageReported {
		return fmt.Errorf("report usage: usage was already reported for this request")
	}
	st.usage, st.usageReported = u, true
	return nil
}

// GetUsage returns the usage reported for the request, and false when none
// was.
func GetUsage(c echo.Context) (Usage, bool) {
	if st := peekState(c); st != nil && st.usageReported {
		return st.usage, true
	}
	return Usage{}, false
}

// requestState is gatekit's per-request record, one allocation per request
// kept in the Echo context.
type requestState struct {
	principal *Principal
	usage     Usage
	progress  Usage
	hold      *budgetHold

	// Space a request would otherwise allocate, kept here when the record
	// lives in a Chain's context.
	requestID     [1]string
	requestIDText [requestIDLength]byte
	// usageReported and progressed sit in the padding after
	// requestIDText, which keeps a Chain's context in a smaller size
	// class.
	usageReported bool
	progressed    bool
	body          limitedBody
	// headers is the room for header values: the rate limiter's and an
	// error response's.
	headers apierrors.Space
	// denial is the room for the request's 429, if it gets one.
	denial denial
}

const stateKey = "gatekit.request"

// state returns the request's record, creating it on first use: inside a
// Chain it is part of the chain's context; elsewhere it is kept in Echo's
// context store.
func state(c echo.Context) *requestState {
	if cc, ok := c.(*chainContext); ok {
		return &cc.state
	}
	if st, ok := c.Get(stateKey).(*requestState); ok {
		return st
	}
	st := &requestState{}
	c.Set(stateKey, st)
	return st
}

// peekState returns the request's record, or nil when there is none yet.
func peekState(c echo.Context) *requestState {
	if cc, ok := c.(*chainContext); ok {
		return &cc.state
	}
	st, _ := c.Get(stateKey).(*requestState)
	return st
}

// contextWithoutCancel is the request's context without its cancellation:
// for bookkeeping that must happen even when the client has gone.
func contextWithoutCancel(c echo.Context) context.Context {
	return context.WithoutCancel(c.Request().Context())
}
