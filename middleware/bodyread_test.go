package middleware_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/gatekit/gatekit/middleware"
)

// brokenBody yields its text, then fails as a connection does when the
// client goes away or a read deadline passes.
type brokenBody struct{ r io.Reader }

func (b *brokenBody) Read(p []byte) (int, error) {
	if n, _ := b.r.Read(p); n > 0 {
		return n, nil
	}
	return 0, errors.New("read tcp: connection reset by peer")
}

func (*brokenBody) Close() error { return nil }

// A body that could not be read whole leaves the rest of it on the
// connection, where it must not be read as the next request: every
// response to such a body closes the connection.
func TestAFailedBodyReadEndsTheConnection(t *testing.T) {
	e, _ := newEcho(t)
	e.Use(middleware.BodyLimit(2000))
	e.POST("/peek", func(c echo.Context) error {
		if _, err := middleware.PeekBody(c); err != nil {
			return err
		}
		return c.NoContent(http.StatusOK)
	})
	e.POST("/bind", func(c echo.Context) error {
		var v map[string]any
		if err := c.Bind(&v); err != nil {
			return err
		}
		return c.NoContent(http.StatusOK)
	})
	e.POST("/read", func(c echo.Context) error {
		if _, err := io.ReadAll(c.Request().Body); err != nil {
			return err
		}
		return c.NoContent(http.StatusOK)
	})
	broken := func(path string) *http.Request {
		req := httptest.NewRequest(http.MethodPost, path, &brokenBody{r: strings.NewReader(`{"a":`)})
		req.ContentLength = 1000 // declared, never sent whole
		req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
		return req
	}
	tooLarge := func(path string, declared bool) *http.Request {
		body := `{"a":"` + strings.Repeat("b", 3000) + `"}`
		req := postJSON(path, body)
		if !declared {
			req.ContentLength = -1
		}
		return req
	}
	for _, tc := range []struct {
		name   string
		req    *http.Request
		status int
	}{
		{"peek, broken body", broken("/peek"), http.StatusBadRequest},
		{"bind, broken body", broken("/bind"), http.StatusBadRequest},
		{"peek, undeclared body over the limit", tooLarge("/peek", false), http.StatusRequestEntityTooLarge},
		{"bind, undeclared body over the limit", tooLarge("/bind", false), http.StatusRequestEntityTooLarge},
		{"read, undeclared body over the limit", tooLarge("/read", false), http.StatusRequestEntityTooLarge},
		{"declared body over the limit", tooLarge("/bind", true), http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := serve(e, tc.req)
			if rec.Code != tc.status || rec.Header().Get(echo.HeaderConnection) != "close" {
				t.Fatalf("status %d, Connection %q: want %d and close; body %s", rec.Code, rec.Header().Get(echo.HeaderConnection), tc.status, rec.Body)
			}
		})
	}
	t.Run("a body read whole keeps the connection", func(t *testing.T) {
		for _, path := range []string{"/peek", "/bind", "/read"} {
			rec := serve(e, postJSON(path, `{"a":1}`))
			if rec.Code != http.StatusOK || rec.Header().Get(echo.HeaderConnection) != "" {
				t.Fatalf("%s: status %d, Connection %q", path, rec.Code, rec.Header().Get(echo.HeaderConnection))
			}
		}
	})
}
