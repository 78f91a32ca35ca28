package middleware

import (
	"net"

	"github.com/labstack/echo/v4"

	apierrors "github.com/gatekit/gatekit/errors"
)

// clientAddress is the client's address as logs name it: the address the
// connection came from. Only an app that configured an IPExtractor (and
// so said which proxies it trusts) gets Echo's RealIP instead; without
// one, RealIP would believe the X-Forwarded-For or X-Real-IP any client
// sends. What an extractor returns is clipped ([apierrors.Clip]).
func clientAddress(c echo.Context) string {
	if e := c.Echo(); e != nil && e.IPExtractor != nil {
		return apierrors.Clip(c.RealIP())
	}
	addr := c.Request().RemoteAddr
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return apierrors.Clip(addr)
}
