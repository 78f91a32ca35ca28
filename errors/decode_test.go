package errors_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	apierrors "github.com/gatekit/gatekit/errors"
)

func TestDecodeReadsBackEveryShape(t *testing.T) {
	for _, shape := range apierrors.Shapes() {
		for _, spec := range apierrors.Catalog() {
			if spec.MidStream {
				continue
			}
			want := apierrors.New(spec.Code, "").WithParam("messages[0].role").WithRetryAfter(2500 * time.Millisecond)
			rec := httptest.NewRecorder()
			apierrors.Write(rec, httptest.NewRequest("GET", "/x", nil), shape, want, apierrors.Meta{RequestID: "req_7"})
			got := apierrors.Decode(rec.Result())
			if got.Status != spec.Status || got.Message != want.Message || got.Retryable != spec.Retryable || got.RequestID != "req_7" {
				t.Fatalf("%s/%s: %+v", shape, spec.Code, got)
			}
			if spec.Retryable && got.RetryAfter != 2500*time.Millisecond {
				t.Fatalf("%s/%s: retry after %v", shape, spec.Code, got.RetryAfter)
			}
			// Shapes that carry the code give it back exactly; the others
			// give the status's most likely code.
			switch shape {
			case apierrors.ShapeOpenAI, apierrors.ShapeProblem, apierrors.ShapeFlat:
				if got.Code != spec.Code {
					t.Fatalf("%s/%s: code %s", shape, spec.Code, got.Code)
				}
			}
			if shape == apierrors.ShapeOpenAI && (got.Param != "messages[0].role" || got.Type != spec.Type) {
				t.Fatalf("openai/%s: %+v", spec.Code, got)
			}
		}
	}
}

func TestDecodeNonEnvelopeBodies(t *testing.T) {
	res := &http.Response{StatusCode: 502, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("<html>bad gateway</html>\nmore"))}
	e := apierrors.Decode(res)
	if e.Code != apierrors.CodeModelServerError || !e.Retryable || e.Message != "<html>bad gateway</html>" {
		t.Fatalf("%+v", e)
	}
	res = &http.Response{StatusCode: 418, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(`{"weird":[1,2]}`))}
	e = apierrors.Decode(res)
	if e.Code != "http_418" || e.Retryable || e.Message != "I'm a teapot" {
		t.Fatalf("%+v", e)
	}
	if apierrors.Decode(&http.Response{StatusCode: 200}) != nil {
		t.Fatal("a 200 decoded as an error")
	}
}

func TestRetryAfterHeaderForms(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		h    http.Header
		want time.Duration
		ok   bool
	}{
		{http.Header{"Retry-After-Ms": {"250"}, "Retry-After": {"9"}}, 250 * time.Millisecond, true},
		{http.Header{"Retry-After-Ms": {"12.5"}}, 12500 * time.Microsecond, true},
		{http.Header{"Retry-After": {"7"}}, 7 * time.Second, true},
		{http.Header{"Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}}, 90 * time.Second, true},
		{http.Header{"Retry-After": {now.Add(-time.Hour).Format(http.TimeFormat)}}, 0, true},
		{http.Header{"Retry-After": {"soon"}}, 0, false},
		{http.Header{"Retry-After-Ms": {"-5"}}, 0, false},
		{http.Header{}, 0, false},
	} {
		got, ok := apierrors.RetryAfterHeader(tc.h, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%v: %v %v, want %v %v", tc.h, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzDecodeBody(f *testing.F) {
	f.Add(502, []byte(`{"error":{"message":"x","code":"model_server_error"}}`), "true", "5")
	f.Add(400, []byte(`{"error":"invalid_request","message":"m"}`), "", "")
	f.Add(429, []byte(`{"type":"error","error":{"type":"rate_limit_error","message":"slow"}}`), "", "Wed, 21 Oct 2015 07:28:00 GMT")
	f.Fuzz(func(t *testing.T, status int, body []byte, retry, after string) {
		if status < 400 || status > 599 {
			return
		}
		h := http.Header{"X-Should-Retry": {retry}, "Retry-After": {after}}
		e := apierrors.DecodeBody(status, h, body)
		if e == nil || e.Status != status || e.Code == "" || e.Message == "" || e.RetryAfter < 0 {
			t.Fatalf("%+v", e)
		}
	})
}
