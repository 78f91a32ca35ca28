package middleware

import (
	stderrors "errors"
	"net/http"
	"os"

	"github.com/labstack/echo/v4"

	apierrors "github.com/gatekit/gatekit/errors"
)

// endConnection has the server close c's connection once this response
// is sent. A request body that failed to read (too slow, over the limit,
// cut off or malformed on the wire) may leave bytes of it on the
// connection, and none of them may be read as the client's next request.
func endConnection(c echo.Context) {
	if res := c.Response(); !res.Committed {
		res.Header().Set(echo.HeaderConnection, "close")
	}
}

// isBodyTooLargeOrLate reports whether a decoder's err comes from reading
// the body (over the route's limit, or not in time) rather than from what
// it holds.
func isBodyTooLargeOrLate(err error) bool {
	_, tooLarge := stderrors.AsType[*http.MaxBytesError](err)
	return tooLarge || stderrors.Is(err, os.ErrDeadlineExceeded)
}

// bodyReadError words a failed read of a request body: 413 over the
// route's limit, 400 invalid_request otherwise.
func bodyReadError(err error) *apierrors.Error {
	if tooLarge, ok := stderrors.AsType[*http.MaxBytesError](err); ok {
		return apierrors.PayloadTooLarge(tooLarge.Limit)
	}
	if stderrors.Is(err, os.ErrDeadlineExceeded) {
		return apierrors.InvalidRequest("The request body did not arrive in time.").WithCause(err)
	}
	return apierrors.InvalidRequest("The request body could not be read.").WithCause(err)
}
