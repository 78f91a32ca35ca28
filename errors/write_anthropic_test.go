package errors_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	apierrors "github.com/gatekit/gatekit/errors"
)

func TestWriteSendsRequestIdInTheAnthropicShapeOnly(t *testing.T) {
	for _, shape := range apierrors.Shapes() {
		rec := httptest.NewRecorder()
		apierrors.Write(rec, httptest.NewRequest(http.MethodPost, "/v1/messages", nil), shape,
			apierrors.New(apierrors.CodeModelOverloaded, ""), apierrors.Meta{RequestID: "req_1"})
		got := rec.Header().Values(apierrors.HeaderAnthropicRequestID)
		if shape == apierrors.ShapeAnthropic && (len(got) != 1 || got[0] != "req_1") {
			t.Errorf("anthropic: request-id %q", got)
		}
		if shape != apierrors.ShapeAnthropic && len(got) != 0 {
			t.Errorf("%s: request-id %q", shape, got)
		}
		if rec.Header().Get("X-Request-Id") != "req_1" || rec.Code != 503 {
			t.Errorf("%s: %d %v", shape, rec.Code, rec.Header())
		}
	}
	// Shared with X-Request-Id, but an Add to one leaves the other alone.
	rec := httptest.NewRecorder()
	apierrors.Write(rec, nil, apierrors.ShapeAnthropic, apierrors.New(apierrors.CodeNotFound, ""), apierrors.Meta{RequestID: "req_2"})
	rec.Header().Add(apierrors.HeaderAnthropicRequestID, "x")
	if v := rec.Header().Values("X-Request-Id"); len(v) != 1 {
		t.Fatalf("X-Request-Id %q", v)
	}
}
