// Package app is the demo provider's API: an Echo instance with gatekit
// mounted and OpenAI-compatible routes. It is a package of its own so that
// tests can serve exactly what `go run ./examples/provider` serves.
package app

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/gatekit/gatekit"
)

// New returns the demo API on a fresh Echo instance, with gatekit mounted
// from cfg.
func New(cfg gatekit.Config) (*echo.Echo, error) {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	if _, err := gatekit.Mount(e, cfg); err != nil {
		return nil, err
	}
	v1 := e.Group("/v1")
	v1.GET("/models", listModels)
	v1.GET("/models/:model", getModel)
	v1.POST("/chat/completions", chatCompletions)
	v1.POST("/audio/transcriptions", transcribe)
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	return e, nil
}
