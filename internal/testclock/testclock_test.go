package testclock_test

import (
	"testing"
	"time"

	"github.com/gatekit/gatekit/internal/testclock"
)

func TestClockMovesOnlyWhenTold(t *testing.T) {
	start := time.Date(2030, time.January, 1, 0, 0, 0, 250_000, time.UTC)
	c := testclock.New(start)
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("New(%v).Now() = %v", start, got)
	}
	c.Advance(1500 * time.Millisecond)
	if got, want := c.Now(), start.Add(1500*time.Millisecond); !got.Equal(want) {
		t.Fatalf("after Advance: %v, want %v", got, want)
	}
	later := start.Add(48 * time.Hour)
	c.Set(later)
	if got := c.Now(); !got.Equal(later) {
		t.Fatalf("after Set: %v, want %v", got, later)
	}
}
