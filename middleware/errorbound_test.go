package middleware_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	apierrors "github.com/gatekit/gatekit/errors"
)

func TestErrorHandlerCutsLongMessagesAndParams(t *testing.T) {
	e, _ := newEcho(t)
	huge := strings.Repeat("é", 100_000)
	e.GET("/long", func(c echo.Context) error {
		return apierrors.InvalidArgument(huge, "Invalid '"+huge+"'.")
	})
	rec := serve(e, httptest.NewRequest(http.MethodGet, "/long", nil))
	env := checkEnvelope(t, rec, http.StatusBadRequest, apierrors.CodeInvalidArgument)
	if rec.Body.Len() > maxBadRequestBody {
		t.Fatalf("a %d-byte answer", rec.Body.Len())
	}
	if !strings.HasSuffix(env.Error.Message, apierrors.CutMark) || !strings.HasSuffix(deref(env.Error.Param), apierrors.CutMark) {
		t.Errorf("message %q / param %v not marked as cut", env.Error.Message, env.Error.Param)
	}
}

func TestNotFoundQuotesALongPathCut(t *testing.T) {
	e, _ := newEcho(t)
	rec := serve(e, httptest.NewRequest(http.MethodGet, "/"+strings.Repeat("p", 200_000), nil))
	env := checkEnvelope(t, rec, http.StatusNotFound, apierrors.CodeNotFound)
	if rec.Body.Len() > maxBadRequestBody || !strings.Contains(env.Error.Message, apierrors.CutMark) {
		t.Fatalf("%d bytes: %.200s", rec.Body.Len(), env.Error.Message)
	}
}

func TestClipCutsOnlyLongInputAndNeverSplitsARune(t *testing.T) {
	if got := apierrors.Clip("short"); got != "short" {
		t.Errorf("Clip(short) = %q", got)
	}
	got := apierrors.Clip(strings.Repeat("€", 200))
	body, ok := strings.CutSuffix(got, apierrors.CutMark)
	if !ok || len(body) > apierrors.MaxQuote || !strings.HasPrefix(strings.Repeat("€", 200), body) {
		t.Errorf("Clip = %q", got)
	}
}
