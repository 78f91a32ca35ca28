package middleware

import (
	"sync"

	"github.com/labstack/echo/v4"
)

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
	once      onceState

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
