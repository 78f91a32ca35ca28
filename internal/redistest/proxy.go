package redistest

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy is a TCP proxy in front of a Server, for tests of what a client
// does when Redis stops answering on a connection without closing it (a
// network partition): while dropping, it reads what either side sends and
// forwards nothing. Connections made before or during a drop stay open.
type Proxy struct {
	ln       net.Listener
	dropping atomic.Bool
	mu       sync.Mutex
	conns    []net.Conn
}

// Proxy starts the server if needed and returns a Proxy of it, closed when
// the test ends.
func (s *Server) Proxy(tb testing.TB) *Proxy {
	tb.Helper()
	s.Ready(tb)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proxy{ln: ln}
	target := s.Addr()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go p.forward(up, c)
			go p.forward(c, up)
		}
	}()
	tb.Cleanup(p.close)
	return p
}

// Addr is the address clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Drop makes the proxy swallow everything, in both directions, until
// Forward.
func (p *Proxy) Drop() { p.dropping.Store(true) }

// Forward makes the proxy forward again. What was dropped stays lost.
func (p *Proxy) Forward() { p.dropping.Store(false) }

// forward copies src to dst, dropping while p is.
func (p *Proxy) forward(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			dst.Close()
			return
		}
		if p.dropping.Load() {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			src.Close()
			return
		}
	}
}

func (p *Proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}
