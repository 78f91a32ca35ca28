package middleware_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/gatekit/gatekit/middleware"
)

// BenchmarkBindJSON is the binder's strict decoding alone on a small chat request,
// as the binder runs it for every JSON body.
func BenchmarkBindJSON(b *testing.B) {
	benchBind(b, `{"model":"gpt-test","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}],"temperature":0.5,"max_tokens":16,"stream":true}`, false)
}

// BenchmarkBindJSONUnknownField is the decoder failing on an unknown field
// of the second message, the error mapped to the envelope's error.
func BenchmarkBindJSONUnknownField(b *testing.B) {
	benchBind(b, `{"model":"gpt-test","messages":[{"role":"system","content":"Be brief."},{"role":"user","extra":"hi"}]}`, true)
}

func benchBind(b *testing.B, body string, fails bool) {
	e := echo.New()
	r := strings.NewReader(body)
	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", r)
	req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	c := e.NewContext(req, httptest.NewRecorder())
	binder := &middleware.Binder{SkipValidation: true}
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(body)
		var v ChatRequest
		if err := binder.Bind(&v, c); (err != nil) != fails {
			b.Fatal(err)
		}
	}
}

// BenchmarkBindJSONEncodingJSONv1 is the decoding the binder did before
// it moved to go-json-experiment (encoding/json's Decoder with
// DisallowUnknownFields and a check for trailing data), on the body of
// BenchmarkBindJSON: the baseline its cost is compared with, in one run.
func BenchmarkBindJSONEncodingJSONv1(b *testing.B) {
	body := `{"model":"gpt-test","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}],"temperature":0.5,"max_tokens":16,"stream":true}`
	r := strings.NewReader(body)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(body)
		var v ChatRequest
		dec := json.NewDecoder(r)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			b.Fatal(err)
		}
		dec.More()
		if _, err := dec.Token(); err != io.EOF {
			b.Fatal(err)
		}
	}
}
