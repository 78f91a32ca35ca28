package gatekit

import (
	"io"
	"log/slog"
	"net/http"
	"time"
)

// ServerConfig holds the timeouts of [NewServer]'s http.Server. Each
// field's zero value takes the default its doc names; a negative value
// turns that bound off.
type ServerConfig struct {
	// Addr is the address to listen on, as http.Server.Addr. Default: ""
	// (":http" for ListenAndServe; unused with Serve).
	Addr string
	// ReadHeaderTimeout bounds reading a request's headers, from the
	// first byte. Default: 10 s.
	ReadHeaderTimeout time.Duration
	// BodyReadTimeout bounds reading a request's body, from the moment its
	// handler starts. A body not read in time fails with a read error (the
	// binder and PeekBody answer 400 invalid_request), and the connection
	// is closed after that answer: no unread rest of the body is taken
	// for another request.
	// Unlike http.Server.ReadTimeout it stops applying once the body is
	// read, so a response streamed for minutes is not cut. Default: 60 s.
	BodyReadTimeout time.Duration
	// WriteStallTimeout bounds each write and flush of a response: a
	// client that stops reading for this long loses the connection. A
	// stream that keeps sending stays open however long it lasts, and a
	// handler may take as long as it needs before its first byte. Default:
	// 60 s.
	WriteStallTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that waits this long for
	// its next request. Default: 120 s.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request line and headers; larger requests
	// get net/http's own plain-text 431. Default: 64 KiB; a negative value
	// leaves net/http's default (1 MB).
	MaxHeaderBytes int
	// Logger receives net/http's own error lines (a failed TLS handshake,
	// a panic outside gatekit's recovery) at warn level. Default:
	// slog.Default().
	Logger *slog.Logger
}

// DefaultServerConfig returns the defaults [NewServer] applies, for
// reading or for changing one field.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{
		ReadHeaderTimeout: 10 * time.Second,
		BodyReadTimeout:   60 * time.Second,
		WriteStallTimeout: 60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}

// NewServer returns an http.Server for h (typically an Echo instance with
// gatekit mounted) whose connections are bounded as a public API needs:
// slow headers, slow bodies, clients that stop reading and idle keep-alive
// connections are all cut off (see [ServerConfig]), while long streamed
// responses are not. A nil cfg takes [DefaultServerConfig]. Start it with
// ListenAndServe or Serve and stop it with Shutdown, as any http.Server.
func NewServer(h http.Handler, cfg *ServerConfig) *http.Server {
	c := ServerConfig{}
	if cfg != nil {
		c = *cfg
	}
	def := DefaultServerConfig()
	pick := func(v, d time.Duration) time.Duration {
		switch {
		case v == 0:
			return d
		case v < 0:
			return 0
		}
		return v
	}
	c.ReadHeaderTimeout = pick(c.ReadHeaderTimeout, def.ReadHeaderTimeout)
	c.BodyReadTimeout = pick(c.BodyReadTimeout, def.BodyReadTimeout)
	c.WriteStallTimeout = pick(c.WriteStallTimeout, def.WriteStallTimeout)
	c.IdleTimeout = pick(c.IdleTimeout, def.IdleTimeout)
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = def.MaxHeaderBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	srv := &http.Server{
		Addr:              c.Addr,
		Handler:           deadlines{next: h, body: c.BodyReadTimeout, stall: c.WriteStallTimeout},
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		IdleTimeout:       c.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(c.Logger.Handler(), slog.LevelWarn),
	}
	if c.MaxHeaderBytes > 0 {
		srv.MaxHeaderBytes = c.MaxHeaderBytes
	}
	return srv
}

// deadlines is the handler [NewServer] serves: it sets the connection's
// read deadline for the body and its write deadline before each write.
type deadlines struct {
	next  http.Handler
	body  time.Duration
	stall time.Duration
}

func (d deadlines) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	if d.body > 0 && r.Body != nil && r.Body != http.NoBody {
		if rc.SetReadDeadline(time.Now().Add(d.body)) == nil {
			r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc, header: w.Header()}
		}
	}
	if d.stall > 0 {
		// A deadline left by the connection's previous response must not
		// cut this one before it writes.
		if rc.SetWriteDeadline(time.Time{}) == nil {
			w = &stallWriter{ResponseWriter: w, rc: rc, stall: d.stall}
		}
	}
	d.next.ServeHTTP(w, r)
}

// deadlineBody lifts the read deadline once the body is read or closed:
// net/http then reads on in the background to notice a client that goes
// away, and a deadline hit there would cancel the request's context.
//
// A read that fails (the deadline passed, the client went away) or a
// close that could not read the rest of the body leaves the request's
// framing unknown, and net/http, seeing this wrapper and not its own body,
// would read what is left of the body as the next request: the response
// says Connection: close instead, which ends the connection after it.
type deadlineBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	header http.Header
	done   bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF:
		b.lift()
	case err != nil:
		b.header.Set("Connection", "close")
	}
	return n, err
}

func (b *deadlineBody) Close() error {
	err := b.ReadCloser.Close()
	if err != nil {
		b.header.Set("Connection", "close")
	}
	b.lift()
	return err
}

func (b *deadlineBody) lift() {
	if !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
}

// stallWriter moves the write deadline stall ahead of every write and
// flush.
type stallWriter struct {
	http.ResponseWriter
	rc    *http.ResponseController
	stall time.Duration
}

func (w *stallWriter) Write(p []byte) (int, error) {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.stall))
	return w.ResponseWriter.Write(p)
}

func (w *stallWriter) WriteHeader(code int) {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.stall))
	w.ResponseWriter.WriteHeader(code)
}

// FlushError flushes, as http.ResponseController.Flush asks.
func (w *stallWriter) FlushError() error {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.stall))
	return w.rc.Flush()
}

// Unwrap returns the connection's writer, for http.ResponseController.
func (w *stallWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
