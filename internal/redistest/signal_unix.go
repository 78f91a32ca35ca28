//go:build unix

package redistest

import (
	"errors"
	"os"
	"syscall"
)

const terminate = syscall.SIGTERM

// Pause freezes the server (SIGSTOP): it keeps its port and connections but
// answers nothing, like a host that hangs. Resume or Stop undo it.
func (s *Server) Pause() error {
	return s.signal(syscall.SIGSTOP)
}

// Resume lets a paused server run again (SIGCONT).
func (s *Server) Resume() error {
	return s.signal(syscall.SIGCONT)
}

func (s *Server) signal(sig os.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return errors.New("redistest: server not running")
	}
	return s.cmd.Process.Signal(sig)
}

func resume(p *os.Process) { p.Signal(syscall.SIGCONT) }
