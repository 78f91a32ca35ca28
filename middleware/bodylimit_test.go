package middleware_test

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/middleware"
)

// jsonBody returns a JSON object of exactly n bytes (n >= 64) that binds
// into a valid ChatRequest.
func jsonBody(n int) []byte {
	head := `{"model":"m","messages":[{"role":"user","content":"`
	tail := `"}]}`
	return []byte(head + strings.Repeat("a", n-len(head)-len(tail)) + tail)
}

// limitedEcho has BodyLimit(limit) and two routes: /bind binds a
// ChatRequest, /read reads the body whole. ran reports whether a handler
// started.
func limitedEcho(t *testing.T, mw echo.MiddlewareFunc) (e *echo.Echo, ran *bool) {
	t.Helper()
	e, _ = newEcho(t)
	e.Use(mw)
	ran = new(bool)
	e.POST("/bind", func(c echo.Context) error {
		*ran = true
		var req ChatRequest
		if err := c.Bind(&req); err != nil {
			return err
		}
		return c.NoContent(http.StatusOK)
	})
	e.POST("/read", func(c echo.Context) error {
		*ran = true
		b, err := io.ReadAll(c.Request().Body)
		if err != nil {
			return err
		}
		return c.String(http.StatusOK, fmt.Sprint(len(b)))
	})
	e.POST("/ignore", func(c echo.Context) error {
		*ran = true
		return c.NoContent(http.StatusAccepted)
	})
	return e, ran
}

// bodyRequest posts body to path through a counting reader; contentLength
// -1 sends it as of unknown length, as a chunked request arrives.
func bodyRequest(path string, body []byte, contentLength int64) (*http.Request, *countingReader) {
	cr := &countingReader{r: bytes.NewReader(body)}
	req := httptest.NewRequest(http.MethodPost, path, cr)
	req.ContentLength = contentLength
	req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	return req, cr
}

func checkTooLarge(t *testing.T, rec *httptest.ResponseRecorder, limitText string) {
	t.Helper()
	env := checkEnvelope(t, rec, http.StatusRequestEntityTooLarge, apierrors.CodePayloadTooLarge)
	if want := "The request body exceeds the limit of " + limitText + "."; env.Error.Message != want {
		t.Errorf("message = %q, want %q", env.Error.Message, want)
	}
}

func TestBodyLimitRejectsADeclaredLengthOverTheLimitBeforeTheHandlerRuns(t *testing.T) {
	for _, path := range []string{"/bind", "/read", "/ignore"} {
		e, ran := limitedEcho(t, middleware.BodyLimit(1024))
		req, body := bodyRequest(path, jsonBody(1025), 1025)
		checkTooLarge(t, serve(e, req), "1 KiB")
		if *ran {
			t.Errorf("%s: handler ran", path)
		}
		if n, read := body.count(); read || n != 0 {
			t.Errorf("%s: %d bytes of the body were read", path, n)
		}
	}
}

func TestBodyLimitCutsAnUndeclaredBodyOffAfterAtMostLimitPlusOneBytes(t *testing.T) {
	for _, path := range []string{"/bind", "/read"} {
		e, _ := limitedEcho(t, middleware.BodyLimit(1024))
		req, body := bodyRequest(path, jsonBody(64<<10), -1)
		checkTooLarge(t, serve(e, req), "1 KiB")
		if n, _ := body.count(); n > 1025 {
			t.Errorf("%s: read %d bytes of the body, want at most 1025", path, n)
		}
	}
}

func TestBodyLimitLetsABodyOfExactlyTheLimitThrough(t *testing.T) {
	for _, declared := range []bool{true, false} {
		for _, path := range []string{"/bind", "/read"} {
			e, _ := limitedEcho(t, middleware.BodyLimit(1024))
			length := int64(-1)
			if declared {
				length = 1024
			}
			req, body := bodyRequest(path, jsonBody(1024), length)
			rec := serve(e, req)
			if rec.Code != http.StatusOK {
				t.Fatalf("%s (declared %v): status %d: %s", path, declared, rec.Code, rec.Body)
			}
			if n, _ := body.count(); n != 1024 {
				t.Errorf("%s (declared %v): read %d bytes, want 1024", path, declared, n)
			}
		}
	}
}

func TestBodyLimitLetsAHandlerIgnoreAnOversizedUndeclaredBody(t *testing.T) {
	e, ran := limitedEcho(t, middleware.BodyLimit(1024))
	req, _ := bodyRequest("/ignore", jsonBody(4096), -1)
	if rec := serve(e, req); rec.Code != http.StatusAccepted || !*ran {
		t.Errorf("status %d, handler ran %v", rec.Code, *ran)
	}
}

// multipartUpload is a form with one file field "file" of size bytes.
func multipartUpload(t *testing.T, size int) (body []byte, contentType string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("purpose", "fine-tune")
	fw, err := mw.CreateFormFile("file", "train.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = fw.Write(bytes.Repeat([]byte("x"), size))
	_ = mw.Close()
	return buf.Bytes(), mw.FormDataContentType()
}

func TestBodyLimitRejectsAnOversizedMultipartUploadNamingTheLimit(t *testing.T) {
	const limit = 1 << 20
	e, _ := newEcho(t)
	e.Use(middleware.BodyLimit(limit))
	e.POST("/v1/files", func(c echo.Context) error {
		fh, err := c.FormFile("file")
		if err != nil {
			return err
		}
		return c.String(http.StatusOK, fmt.Sprint(fh.Size))
	})
	for _, declared := range []bool{true, false} {
		t.Run(fmt.Sprint("declared=", declared), func(t *testing.T) {
			body, ct := multipartUpload(t, limit+limit/2)
			cr := &countingReader{r: bytes.NewReader(body)}
			req := httptest.NewRequest(http.MethodPost, "/v1/files", cr)
			req.Header.Set(echo.HeaderContentType, ct)
			req.ContentLength = -1
			if declared {
				req.ContentLength = int64(len(body))
			}
			checkTooLarge(t, serve(e, req), "1 MiB")
			if n, _ := cr.count(); n > limit+1 {
				t.Errorf("read %d bytes, want at most %d", n, limit+1)
			}
		})
	}

	body, ct := multipartUpload(t, 1000)
	req := httptest.NewRequest(http.MethodPost, "/v1/files", bytes.NewReader(body))
	req.Header.Set(echo.HeaderContentType, ct)
	if rec := serve(e, req); rec.Code != http.StatusOK || rec.Body.String() != "1000" {
		t.Errorf("small upload: %d %s", rec.Code, rec.Body)
	}
}

// unsized hides a reader's length, so net/http sends it chunked.
type unsized struct{ io.Reader }

func TestBodyLimitCutsOffAChunkedRequestOverARealConnection(t *testing.T) {
	const limit = 4 << 10
	e, _ := newEcho(t)
	var counted *countingReader
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if te := c.Request().TransferEncoding; len(te) != 1 || te[0] != "chunked" || c.Request().ContentLength != -1 {
				t.Errorf("request arrived with Transfer-Encoding %v, length %d; want chunked", te, c.Request().ContentLength)
			}
			counted = &countingReader{r: c.Request().Body}
			c.Request().Body = counted
			return next(c)
		}
	}, middleware.BodyLimit(limit))
	e.POST("/v1/chat/completions", func(c echo.Context) error {
		var req ChatRequest
		if err := c.Bind(&req); err != nil {
			return err
		}
		return c.NoContent(http.StatusOK)
	})
	srv := httptest.NewServer(e)
	defer srv.Close()

	post := func(body []byte) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions", unsized{bytes.NewReader(body)})
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	res := post(jsonBody(64 << 10))
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d: %s", res.StatusCode, raw)
	}
	env := decodeEnvelope(t, raw)
	if env.Error.Code != "payload_too_large" || env.Error.Message != "The request body exceeds the limit of 4 KiB." {
		t.Errorf("envelope = %+v", env.Error)
	}
	if n, _ := counted.count(); n > limit+1 {
		t.Errorf("the handler's chain read %d bytes, want at most %d", n, limit+1)
	}

	res = post(jsonBody(limit))
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("a body of exactly the limit: status %d", res.StatusCode)
	}
}

func TestBodyLimitLimitForChoosesTheLimitPerRequest(t *testing.T) {
	mw, err := middleware.BodyLimitConfig{
		Limit: 1024,
		LimitFor: func(c echo.Context) int64 {
			switch c.QueryParam("limit") {
			case "none":
				return -1
			case "small":
				return 100
			}
			return 0 // the config's Limit
		},
	}.ToMiddleware()
	if err != nil {
		t.Fatal(err)
	}
	e, _ := limitedEcho(t, mw)
	for _, tt := range []struct {
		query  string
		size   int
		status int
	}{
		{"none", 1 << 20, http.StatusOK},
		{"small", 100, http.StatusOK},
		{"small", 101, http.StatusRequestEntityTooLarge},
		{"default", 1024, http.StatusOK},
		{"default", 1025, http.StatusRequestEntityTooLarge},
	} {
		for _, length := range []int64{int64(tt.size), -1} {
			req, _ := bodyRequest("/read?limit="+tt.query, bytes.Repeat([]byte("x"), tt.size), length)
			if rec := serve(e, req); rec.Code != tt.status {
				t.Errorf("limit=%s, %d bytes (length %d): status %d, want %d", tt.query, tt.size, length, rec.Code, tt.status)
			}
		}
	}
}

func TestBodyLimitLimitForAloneLeavesZeroUnlimited(t *testing.T) {
	mw, err := middleware.BodyLimitWithConfig(middleware.BodyLimitConfig{
		LimitFor: func(echo.Context) int64 { return 0 },
	})
	if err != nil {
		t.Fatal(err)
	}
	e, _ := limitedEcho(t, mw)
	req, _ := bodyRequest("/read", bytes.Repeat([]byte("x"), 1<<20), -1)
	if rec := serve(e, req); rec.Code != http.StatusOK {
		t.Errorf("status %d", rec.Code)
	}
}

func TestBodyLimitSkipperSkips(t *testing.T) {
	mw, err := middleware.BodyLimitConfig{Limit: 10, Skipper: func(c echo.Context) bool { return true }}.ToMiddleware()
	if err != nil {
		t.Fatal(err)
	}
	e, _ := limitedEcho(t, mw)
	req, _ := bodyRequest("/read", bytes.Repeat([]byte("x"), 100), 100)
	if rec := serve(e, req); rec.Code != http.StatusOK {
		t.Errorf("status %d", rec.Code)
	}
}

func TestBodyLimitConfigNeedsAPositiveLimitOrLimitFor(t *testing.T) {
	for _, limit := range []int64{0, -1} {
		if _, err := (middleware.BodyLimitConfig{Limit: limit}).ToMiddleware(); err == nil {
			t.Errorf("Limit %d without LimitFor accepted", limit)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("BodyLimit(0) did not panic")
		}
	}()
	middleware.BodyLimit(0)
}

func TestBodyLimitPassesARequestWithoutABody(t *testing.T) {
	e, _ := newEcho(t)
	e.Use(middleware.BodyLimit(1))
	e.GET("/v1/models", func(c echo.Context) error { return c.NoContent(http.StatusOK) })
	if rec := serve(e, httptest.NewRequest(http.MethodGet, "/v1/models", nil)); rec.Code != http.StatusOK {
		t.Errorf("status %d", rec.Code)
	}
}
