// Package middleware is gatekit's Echo glue: the global error handler that
// renders every failure as one envelope, request ids, panic recovery, a
// strict JSON binder with validation, per-route body limits,
// authentication, idempotency, admission (every rate, token, concurrency
// and budget limit of a request in one reservation, see
// [AdmissionWithConfig]) and a server-sent events writer whose failures
// end the stream with an error event.
//
// Each middleware follows Echo's conventions: an XConfig struct with a
// Skipper, a DefaultXConfig, X() and XWithConfig(cfg), and an
// error-returning ToMiddleware(). Middleware returns errors up the chain;
// only [ErrorHandler] writes them.
//
// Most services call gatekit.Mount, which installs all of this at once.
package middleware
