package app

import (
	stderrors "errors"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	apierrors "github.com/gatekit/gatekit/errors"
)

// transcription is the demo's answer to an upload: no words, only what
// arrived.
type transcription struct {
	Text     string `json:"text"`
	Filename string `json:"filename"`
	Bytes    int64  `json:"bytes"`
	Model    string `json:"model,omitempty"`
}

// transcribe reads a multipart upload part by part, never buffering the
// file, and answers with its name and size. The route's body limit cuts
// the upload off at the limit.
func transcribe(c echo.Context) error {
	mr, err := c.Request().MultipartReader()
	if err != nil {
		if stderrors.Is(err, http.ErrMissingBoundary) {
			return apierrors.New(apierrors.CodeUnsupportedMediaType,
				"The Content-Type 'multipart/form-data' has no boundary parameter; send 'multipart/form-data; boundary=...', as HTTP clients do for a form upload.")
		}
		if stderrors.Is(err, http.ErrNotMultipart) {
			return apierrors.UnsupportedMediaType("multipart/form-data", mediaType(c))
		}
		return apierrors.InvalidRequest("The multipart body could not be read.").WithCause(err)
	}
	var out transcription
	found := false
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return apierrors.InvalidRequest("The multipart body is malformed.").WithCause(err)
		}
		switch part.FormName() {
		case "file":
			n, err := io.Copy(io.Discard, part)
			if err != nil {
				return apierrors.InvalidRequest("The uploaded file could not be read.").WithCause(err)
			}
			out.Filename, out.Bytes, found = part.FileName(), n, true
		case "model":
			b, err := io.ReadAll(io.LimitReader(part, 256))
			if err != nil {
				return apierrors.InvalidRequest("The multipart body is malformed.").WithCause(err)
			}
			out.Model = string(b)
		}
		_ = part.Close()
	}
	if !found {
		return apierrors.InvalidArgument("file", "Missing required parameter: 'file'.")
	}
	return c.JSON(http.StatusOK, out)
}

func mediaType(c echo.Context) string {
	return c.Request().Header.Get(echo.HeaderContentType)
}
