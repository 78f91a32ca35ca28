package middleware_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/middleware"
)

// fuzzBodyLimit is the body limit under fuzzing: small, so that inputs
// over it stay cheap to mutate and minimize.
const fuzzBodyLimit = 1 << 10

// fuzzMaxBody bounds the fuzzer's own bytes; sizes up to and over the
// limit come from padding. Long inputs make each new finding slow to
// minimize, which stalls a short fuzzing run.
const fuzzMaxBody = 512

// fuzzContentTypes are the Content-Type headers the fuzzer chooses from.
var fuzzContentTypes = []string{
	"application/json",
	"application/json; charset=utf-8",
	"application/vnd.x+json",
	"",
	"text/plain",
	"multipart/form-data; boundary=x",
	"application/json; charset=\"",
	"\xff/json",
}

// FuzzBindValidateRender posts any body, with one of several content
// types and padded with up to twice the limit of leading white space, through a real Echo with the error handler, binder, validator and
// a 1 KiB body limit. Whatever the input, the answer is a 200 for a request
// that satisfies every rule, or a 4xx carrying a well-formed envelope whose
// code, status and retry flag agree with the catalog; never a 5xx, never a
// panic.
func FuzzBindValidateRender(f *testing.F) {
	seeds := []string{
		validChat,
		`{"model":"m","messages":[{"role":"system","content":"x"},{"role":"assistant","content":""}],"temperature":2,"max_tokens":1,"stream":true}`,
		`{"model":"m","messages":[{"role":"user"}],"temprature":1}`,
		validChat + ` {}`,
		validChat + `x`,
		`{"model":"m",,}`,
		`{"model":"m","messages":[{"role":"us`,
		``,
		`   `,
		`null`,
		`[]`,
		`"s"`,
		`{"model":"m","messages":[{"role":"user"}],"temperature":"hot"}`,
		`{"model":"m","messages":[{"role":"user"}],"temperature":1e400}`,
		`{"model":"m","messages":[{"role":"user"}],"temperature":-0}`,
		`{"model":"m","messages":[{"role":"user"}],"max_tokens":99999999999999999999}`,
		`{"model":"m","messages":[{"role":"user"}],"max_tokens":-1}`,
		`{"model":"m","messages":[{"role":"robot"}]}`,
		`{"model":"m","messages":[]}`,
		`{"model":"m","messages":null}`,
		`{"model":null,"messages":[{"role":"user"}]}`,
		`{"MODEL":"m","Messages":[{"ROLE":"user"}]}`,
		`{"model":"m","model":"n","messages":[{"role":"user"}]}`,
		`{"model":"\ud800\u2028\"","messages":[{"role":"user","content":"\u0000"}]}`,
		"{\"model\":\"\xff\xfe\",\"messages\":[{\"role\":\"user\"}]}",
		`{"model":"m","messages":[{"role":"user","extra":{"a":[1,2,{"b":null}]}}]}`,
		`{"model":"m","messages":[[[[[[[[[[]]]]]]]]]]}`,
		`{"model":"m","messages":[{"role":"user"}],"stream":"yes"}`,
		`{"model":"m","messages":{"role":"user"}}`,
		`{"model":"` + strings.Repeat("m", 100) + `","messages":[{"role":"user"}]}`,
		"--x\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm\r\n--x--\r\n",
	}
	for i, s := range seeds {
		f.Add([]byte(s), uint8(i%3), uint16(0))
	}
	f.Add([]byte(validChat), uint8(3), uint16(0))
	f.Add([]byte(validChat), uint8(4), uint16(0))
	f.Add([]byte(validChat), uint8(5), uint16(0))
	// Bodies at and over the limit come from padding, not from long seeds.
	f.Add([]byte(validChat), uint8(0), uint16(fuzzBodyLimit-len(validChat)))
	f.Add([]byte(validChat), uint8(1), uint16(fuzzBodyLimit-len(validChat)+1))
	f.Add([]byte(`{"model":"m",`), uint8(0), uint16(2*fuzzBodyLimit))

	e := echo.New()
	h, err := middleware.ErrorHandlerConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}.ToHandler()
	if err != nil {
		f.Fatal(err)
	}
	e.HTTPErrorHandler = h
	e.Binder = middleware.NewBinder()
	e.Validator = middleware.NewValidator()
	e.Use(middleware.RequestID(), middleware.BodyLimit(fuzzBodyLimit))
	e.POST("/v1/chat/completions", func(c echo.Context) error {
		var req ChatRequest
		if err := c.Bind(&req); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, req)
	})

	f.Fuzz(func(t *testing.T, body []byte, ct uint8, pad uint16) {
		if len(body) > fuzzMaxBody {
			t.Skip("long bodies come from padding")
		}
		contentType := fuzzContentTypes[int(ct)%len(fuzzContentTypes)]
		if n := int(pad) % (2*fuzzBodyLimit + 1); n > 0 {
			// Leading white space is valid JSON: the body's meaning stays,
			// its size crosses the limit.
			body = append(bytes.Repeat([]byte{' '}, n), body...)
		}
		for _, length := range []int64{int64(len(body)), -1} {
			req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", bytes.NewReader(body))
			req.ContentLength = length
			if contentType != "" {
				req.Header.Set(echo.HeaderContentType, contentType)
			}
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			if rec.Code == http.StatusOK {
				checkValidChat(t, rec.Body.Bytes())
				continue
			}
			checkClientError(t, rec)
		}
	})
}

// checkValidChat asserts a bound request satisfies every rule of
// ChatRequest.
func checkValidChat(t *testing.T, body []byte) {
	t.Helper()
	var req ChatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		t.Fatalf("200 with a body that is not a ChatRequest: %v: %s", err, body)
	}
	if req.Model == "" || len(req.Messages) == 0 {
		t.Fatalf("accepted a request without model or messages: %s", body)
	}
	for _, m := range req.Messages {
		if !slices.Contains([]string{"system", "user", "assistant"}, m.Role) {
			t.Fatalf("accepted role %q", m.Role)
		}
	}
	if tp := req.Temperature; tp != nil && (*tp < 0 || *tp > 2) {
		t.Fatalf("accepted temperature %v", *tp)
	}
	if mt := req.MaxTokens; mt != nil && *mt < 1 {
		t.Fatalf("accepted max_tokens %d", *mt)
	}
}

// checkClientError asserts rec is a 4xx with a well-formed OpenAI envelope
// that agrees with the catalog.
func checkClientError(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code < 400 || rec.Code >= 500 {
		t.Fatalf("status %d, want 200 or a 4xx: %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get(echo.HeaderContentType); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	env := decodeEnvelope(t, rec.Body.Bytes())
	spec, ok := apierrors.Lookup(apierrors.Code(env.Error.Code))
	if !ok {
		t.Fatalf("code %q is not in the catalog: %s", env.Error.Code, rec.Body)
	}
	if spec.Status != rec.Code || spec.Type != env.Error.Type {
		t.Fatalf("code %s answered %d %s; the catalog says %d %s", spec.Code, rec.Code, env.Error.Type, spec.Status, spec.Type)
	}
	if env.Error.Message == "" {
		t.Fatal("empty message")
	}
	retry := rec.Header().Get("x-should-retry")
	if retry == "" || retry != map[bool]string{true: "true", false: "false"}[spec.Retryable] {
		t.Fatalf("x-should-retry %q for %s", retry, spec.Code)
	}
	if id := rec.Header().Get(middleware.HeaderRequestID); id == "" || id != env.Error.RequestID {
		t.Fatalf("request id %q in the header, %q in the body", id, env.Error.RequestID)
	}
}
