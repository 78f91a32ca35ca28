// Package app is the demo provider's API: an Echo instance with gatekit
// mounted, OpenAI-compatible routes and Anthropic's Messages API beside
// them. It is a package of its own so that
// tests can serve exactly what `go run ./examples/provider` serves.
package app

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/gatekit/gatekit"
	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/middleware"
)

// New returns the demo API on a fresh Echo instance, with gatekit mounted
// from cfg; every GET route answers HEAD too. A route added later needs
// another middleware.HeadForGet. Close the Gate after the server has shut down, so that a
// durable store writes what it has queued.
func New(cfg gatekit.Config) (*echo.Echo, *gatekit.Gate, error) {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	gate, err := gatekit.Mount(e, cfg)
	if err != nil {
		return nil, nil, err
	}
	v1 := e.Group("/v1")
	v1.GET("/key", keyStatus(gate))
	v1.GET("/models", listModels)
	v1.GET("/models/:model", getModel)
	v1.POST("/chat/completions", chatCompletions)
	v1.POST("/messages", messages)
	v1.POST("/audio/transcriptions", transcribe)
	// Liveness: the process answers. Readiness: its stores answer too.
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	e.GET("/readyz", readiness(gate))
	middleware.HeadForGet(e)
	return e, gate, nil
}

// readiness answers 200 "ready" while every store of gate answers, and
// otherwise 503 naming the store that does not (its error is logged, not
// sent): a load balancer stops routing to an instance whose Redis it cannot
// reach, while /healthz keeps it alive.
func readiness(gate *gatekit.Gate) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := gate.Ready(c.Request().Context())
		if err == nil {
			return c.String(http.StatusOK, "ready\n")
		}
		reason := "not ready"
		if nr, ok := errors.AsType[*gatekit.NotReadyError](err); ok {
			reason = "not ready: the " + nr.Store + " store is not answering"
		}
		gate.Config().Logger.Warn("readyz: "+reason, "error", err.Error())
		return c.String(http.StatusServiceUnavailable, reason+"\n")
	}
}

// statusRoute is the route GET /v1/key reports limits on, by the value of
// its route parameter.
func statusRoute(name string) (string, bool) {
	switch name {
	case "", "chat":
		return "/v1/chat/completions", true
	case "messages":
		return "/v1/messages", true
	}
	return "", false
}

// keyStatus answers the caller's limits on chat completions (or, with
// ?route=messages, on the Messages API) and its budgets: what it may
// still do, and when that resets.
func keyStatus(gate *gatekit.Gate) echo.HandlerFunc {
	return func(c echo.Context) error {
		p := middleware.GetPrincipal(c)
		if p == nil {
			return apierrors.MissingAPIKey()
		}
		route, ok := statusRoute(c.QueryParam("route"))
		if !ok {
			return apierrors.InvalidArgument("route", "Invalid value for 'route': supported values are 'chat' and 'messages'.")
		}
		st, err := gate.Status(c.Request().Context(), p, http.MethodPost, route)
		if err != nil {
			return apierrors.ServiceUnavailable(0).WithCause(err)
		}
		return c.JSON(http.StatusOK, st)
	}
}
