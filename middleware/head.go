package middleware

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// HeadForGet registers HEAD on every GET route of e that has no HEAD
// route of its own, as HTTP asks of a server (RFC 9110, 9.3.2): a HEAD
// runs the GET route's handler, its route middleware included, and gets
// the same status and headers; net/http sends no body for a HEAD, and the
// error handler writes none. Call it once the routes are registered (it
// sees only those); calling it again registers only what is new. Handlers
// must run on Echo's own context, as Echo and gatekit's [Chain] give them.
func HeadForGet(e *echo.Echo) {
	has := map[string]bool{}
	for _, r := range e.Routes() {
		if r.Method == http.MethodHead {
			has[r.Path] = true
		}
	}
	for _, r := range e.Routes() {
		if r.Method != http.MethodGet || has[r.Path] {
			continue
		}
		has[r.Path] = true
		e.Add(http.MethodHead, r.Path, func(c echo.Context) error {
			// Echo's router fills only its own context: the one inside
			// a Chain's. The GET route has the same pattern, so the path
			// parameters it sets are the ones the HEAD route had; the
			// handler then runs on c, with the request's gatekit record.
			inner := c
			for {
				cc, ok := inner.(*chainContext)
				if !ok {
					break
				}
				inner = cc.Context
			}
			e.Router().Find(http.MethodGet, echo.GetPath(c.Request()), inner)
			return inner.Handler()(c)
		})
	}
}
