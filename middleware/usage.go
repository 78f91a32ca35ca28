package middleware

import (
	"context"
	"fmt"
	"sync"

	"github.com/labstack/echo/v4"
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
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.usageReported {
		return fmt.Errorf("report usage: usage was already reported for this request")
	}
	st.usage, st.usageReported = u, true
	return nil
}

// ReportProgress records what a streaming request has used so far. It
// costs no store call: if the request is settled before its handler calls
// ReportUsage (the server shut down while it ran, or the handler failed),
// the last progress is what is settled. Negative counts are an error and
// change nothing.
func ReportProgress(c echo.Context, u Usage) error {
	if u.PromptTokens < 0 || u.CompletionTokens < 0 {
		return fmt.Errorf("report progress: negative token count (%d prompt, %d completion)", u.PromptTokens, u.CompletionTokens)
	}
	st := state(c)
	st.mu.Lock()
	st.progress, st.progressed = u, true
	st.mu.Unlock()
	return nil
}

// GetUsage returns the usage reported for the request, and false when none
// was.
func GetUsage(c echo.Context) (Usage, bool) {
	st := peekState(c)
	if st == nil {
		return Usage{}, false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.usage, st.usageReported
}

// requestState is gatekit's per-request record, one allocation per request
// kept in the Echo context.
type requestState struct {
	principal *Principal

	// mu guards the usage fields, which a settlement at shutdown reads
	// while the handler may still report.
	mu            sync.Mutex
	usage         Usage
	progress      Usage
	usageReported bool
	progressed    bool

	// admitted reports that admission reserved the request's tokens,
	// allowance of them for its output; open, that a reservation is held
	// in admit.
	admitted  bool
	open      bool
	allowance int64
	admit     admitted
	detached  detachedContext

	// Space a request would otherwise allocate, kept here when the record
	// lives in a Chain's context.
	requestID     [1]string
	requestIDText [requestIDLength]byte
	body          limitedBody
	peeked        peekedBody
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
