package keys_test

import (
	"testing"

	"github.com/gatekit/gatekit/keys"
	"github.com/gatekit/gatekit/keys/keystest"
)

func TestMemoryConformance(t *testing.T) {
	keystest.Run(t, keystest.Factory{New: func(*testing.T) keys.Store { return keys.NewMemory() }})
}
