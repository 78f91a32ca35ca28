//go:build !unix

package redistest

import (
	"errors"
	"os"
)

const terminate = os.Kill

// Pause is not supported on this platform.
func (s *Server) Pause() error { return errors.New("redistest: Pause needs a unix platform") }

// Resume is not supported on this platform.
func (s *Server) Resume() error { return errors.New("redistest: Resume needs a unix platform") }

func resume(*os.Process) {}
