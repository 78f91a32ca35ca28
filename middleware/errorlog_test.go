package middleware_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	apierrors "github.com/gatekit/gatekit/errors"
)

func TestErrorHandlerLogsRepeated5xxOnceASecondPerCode(t *testing.T) {
	e, logs := newEcho(t)
	e.GET("/outage", func(c echo.Context) error {
		return apierrors.ServiceUnavailable(0).WithCause(errors.New("redis: connection refused"))
	})
	e.GET("/bug", func(c echo.Context) error { return errors.New("nil map") })
	for range 50 {
		serve(e, httptest.NewRequest(http.MethodGet, "/outage", nil))
	}
	serve(e, httptest.NewRequest(http.MethodGet, "/bug", nil))
	out := logs.String()
	if n := strings.Count(out, `"code":"service_unavailable"`); n < 1 || n > 3 {
		t.Errorf("%d lines for 50 identical 503s in a burst, want one a second:\n%s", n, out)
	}
	if !strings.Contains(out, `"code":"internal_error"`) {
		t.Errorf("the 500 after the flood of 503s was not logged:\n%s", out)
	}
}

func TestErrorHandlerLogsTheStatusAStreamClientGot(t *testing.T) {
	e, logs := newEcho(t)
	e.GET("/stream", func(c echo.Context) error {
		c.Response().Header().Set(echo.HeaderContentType, "text/event-stream")
		c.Response().WriteHeader(http.StatusOK)
		_, _ = c.Response().Write([]byte("data: {}\n\n"))
		c.Response().Flush()
		return apierrors.ModelTimeout("")
	})
	rec := serve(e, httptest.NewRequest(http.MethodGet, "/stream", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `data: {"error":`) {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	out := logs.String()
	if !strings.Contains(out, `"status":200`) || strings.Contains(out, `"status":504`) || !strings.Contains(out, `"code":"model_timeout"`) {
		t.Errorf("want the line to say status 200 and code model_timeout:\n%s", out)
	}
}
