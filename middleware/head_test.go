package middleware_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/gatekit/gatekit/middleware"
)

func TestHeadForGetRunsTheGETRouteWithItsParams(t *testing.T) {
	e, logs := newEcho(t)
	e.GET("/items/:id", func(c echo.Context) error {
		c.Response().Header().Set("X-Item", c.Param("id"))
		return c.JSON(http.StatusOK, map[string]string{"id": c.Param("id")})
	})
	e.HEAD("/own", func(c echo.Context) error { return c.NoContent(http.StatusTeapot) })
	e.GET("/own", func(c echo.Context) error { return c.NoContent(http.StatusOK) })
	e.POST("/post", func(c echo.Context) error { return c.NoContent(http.StatusOK) })
	middleware.HeadForGet(e)
	middleware.HeadForGet(e)

	rec := serve(e, httptest.NewRequest(http.MethodHead, "/items/42", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("X-Item") != "42" {
		t.Fatalf("HEAD /items/42: %d %v %s %s", rec.Code, rec.Header(), rec.Body, logs)
	}
	if rec := serve(e, httptest.NewRequest(http.MethodHead, "/own", nil)); rec.Code != http.StatusTeapot {
		t.Errorf("HEAD /own: %d, want its own route's 418", rec.Code)
	}
	if rec := serve(e, httptest.NewRequest(http.MethodHead, "/post", nil)); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("HEAD /post: %d, want 405", rec.Code)
	}
}
