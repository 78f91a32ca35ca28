package middleware

import (
	"context"
	"fmt"

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

// contextWithoutCancel is the request's context without its cancellation:
// for bookkeeping that must happen even when the client has gone.
func contextWithoutCancel(c echo.Context) context.Context {
	return context.WithoutCancel(c.Request().Context())
}
