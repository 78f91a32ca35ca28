package gatekit_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gatekit/gatekit"
	"github.com/gatekit/gatekit/middleware"
)

// The connections each test opens, and the bound under test: short, so
// that the tests are fast; the defaults are the same code with longer
// durations.
const (
	hostileConns = 20
	shortTimeout = 200 * time.Millisecond
	closeWithin  = 3 * time.Second
)

// boundedServer serves a gatekit Echo with a binding route and a
// streaming route through gatekit.NewServer with short timeouts, on a
// loopback port, and returns its address.
func boundedServer(t *testing.T) string {
	t.Helper()
	e := echo.New()
	if _, err := gatekit.Mount(e, gatekit.Config{Logger: discardLogger()}); err != nil {
		t.Fatal(err)
	}
	e.POST("/bind", func(c echo.Context) error {
		var v map[string]any
		if err := c.Bind(&v); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, v)
	})
	e.POST("/peek", func(c echo.Context) error {
		// As the admission step reads a body before the handler binds it.
		if _, err := middleware.PeekBody(c); err != nil {
			return err
		}
		var v map[string]any
		if err := c.Bind(&v); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, v)
	})
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	e.GET("/stream", func(c echo.Context) error {
		c.Response().Header().Set(echo.HeaderContentType, "text/event-stream")
		c.Response().WriteHeader(http.StatusOK)
		// Longer in all than every timeout, each event well within them.
		for i := range 8 {
			if err := c.Request().Context().Err(); err != nil {
				return err
			}
			fmt.Fprintf(c.Response(), "data: %d\n\n", i)
			c.Response().Flush()
			time.Sleep(shortTimeout / 2)
		}
		return nil
	})
	srv := gatekit.NewServer(e, &gatekit.ServerConfig{
		ReadHeaderTimeout: shortTimeout,
		BodyReadTimeout:   shortTimeout,
		WriteStallTimeout: shortTimeout,
		IdleTimeout:       shortTimeout,
		Logger:            discardLogger(),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// closedByServer reports whether the server closes conn within
// closeWithin, reading (and dropping) whatever it sends until then.
func closedByServer(conn net.Conn) bool {
	_ = conn.SetReadDeadline(time.Now().Add(closeWithin))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// eachConn opens hostileConns loopback connections to addr, runs client on
// each in its own goroutine, and fails the test for every connection the
// server did not close within closeWithin.
func eachConn(t *testing.T, addr string, client func(net.Conn)) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := 0
	for range hostileConns {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer conn.Close()
			client(conn)
			if !closedByServer(conn) {
				mu.Lock()
				open++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if open > 0 {
		t.Fatalf("%d of %d connections still open after %v", open, hostileConns, closeWithin)
	}
}

// trickle writes s a byte at a time, a tenth of shortTimeout apart, until
// the server stops taking bytes or closeWithin has passed.
func trickle(conn net.Conn, s string) {
	stop := time.Now().Add(closeWithin)
	for i := 0; i < len(s) && time.Now().Before(stop); i++ {
		if _, err := conn.Write([]byte{s[i]}); err != nil {
			return
		}
		time.Sleep(shortTimeout / 10)
	}
}

func TestServerClosesConnectionsWhoseBodyTrickles(t *testing.T) {
	addr := boundedServer(t)
	eachConn(t, addr, func(conn net.Conn) {
		fmt.Fprintf(conn, "POST /bind HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", 100<<10)
		trickle(conn, `{"a":"`+strings.Repeat("b", 100<<10))
	})
}

// checkLateBodyEndsConnection posts to path on addr a declared body of
// which only the start comes, and then, once the server has answered, the
// bytes of another request as the rest of the body: the answer must close
// the connection, and those bytes must not be answered as a request.
func checkLateBodyEndsConnection(t *testing.T, addr, path string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"a\":", path)
	_ = conn.SetReadDeadline(time.Now().Add(closeWithin))
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest || !res.Close {
		t.Errorf("status %d, Connection %q: want a 400 that closes the connection: %s", res.StatusCode, res.Header.Get("Connection"), body)
	}
	if _, err := fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return // closed already
	}
	if res, err := http.ReadResponse(br, nil); err == nil {
		t.Fatalf("the body's bytes were answered as a request: %d", res.StatusCode)
	}
	if !closedByServer(conn) {
		t.Fatal("connection still open")
	}
}

func TestServerEndsTheConnectionOfABodyNotReadInTime(t *testing.T) {
	addr := boundedServer(t)
	for _, path := range []string{"/peek", "/bind"} {
		t.Run(path, func(t *testing.T) { checkLateBodyEndsConnection(t, addr, path) })
	}
}

func TestServerEndsTheConnectionOfABodyNotReadInTimeWhateverReadsIt(t *testing.T) {
	// A handler of its own, without gatekit's middleware, that reads the
	// body, closes it and answers.
	srv := gatekit.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			http.Error(w, "late", http.StatusBadRequest)
			return
		}
		io.WriteString(w, "ok\n")
	}), &gatekit.ServerConfig{BodyReadTimeout: shortTimeout, Logger: discardLogger()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	checkLateBodyEndsConnection(t, ln.Addr().String(), "/read")
}

func TestServerClosesConnectionsWhoseHeadersTrickle(t *testing.T) {
	addr := boundedServer(t)
	eachConn(t, addr, func(conn net.Conn) {
		trickle(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "+strings.Repeat("s", 1000))
	})
}

func TestServerClosesIdleKeepAliveConnections(t *testing.T) {
	addr := boundedServer(t)
	eachConn(t, addr, func(conn net.Conn) {
		fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || res.Close {
			t.Errorf("status %d, close %v: want a kept-alive 200", res.StatusCode, res.Close)
		}
	})
}

func TestServerKeepsStreamsLongerThanItsTimeouts(t *testing.T) {
	addr := boundedServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), closeWithin)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/stream", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("stream cut after %q: %v", body, err)
	}
	if n := strings.Count(string(body), "data: "); n != 8 {
		t.Fatalf("%d events, want 8: %q", n, body)
	}
}

func TestServerStillReadsABodyThatArrivesInTime(t *testing.T) {
	addr := boundedServer(t)
	res, err := http.Post("http://"+addr+"/bind", "application/json", strings.NewReader(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if b, _ := io.ReadAll(res.Body); res.StatusCode != http.StatusOK || string(b) != "{\"a\":1}\n" {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
}

func TestNewServerTakesItsDefaults(t *testing.T) {
	srv := gatekit.NewServer(http.NotFoundHandler(), nil)
	def := gatekit.DefaultServerConfig()
	if srv.ReadHeaderTimeout != def.ReadHeaderTimeout || srv.IdleTimeout != def.IdleTimeout || srv.MaxHeaderBytes != def.MaxHeaderBytes || srv.ReadTimeout != 0 || srv.WriteTimeout != 0 {
		t.Fatalf("server %+v", srv)
	}
}
