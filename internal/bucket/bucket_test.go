package bucket

import (
	"errors"
	"math"
	"testing"
	"time"
)

func TestNewScalesByTheCommonDivisor(t *testing.T) {
	for _, tc := range []struct {
		limit  int64
		window time.Duration
		burst  int64
		want   Params
	}{
		{60, time.Minute, 0, Params{Unit: 1000, Rate: 1, Burst: 60}},
		{7, time.Hour, 0, Params{Unit: 3_600_000, Rate: 7, Burst: 7}},
		{5000, time.Second, 0, Params{Unit: 1, Rate: 5, Burst: 5000}},
		{60, time.Minute, 10, Params{Unit: 1000, Rate: 1, Burst: 10}},
		{1_000_000_000, 24 * time.Hour, 0, Params{Unit: 54, Rate: 625, Burst: 1_000_000_000}},
	} {
		got, err := New(tc.limit, tc.window, tc.burst)
		if err != nil || got != tc.want {
			t.Errorf("New(%d, %v, %d) = %+v, %v; want %+v", tc.limit, tc.window, tc.burst, got, err, tc.want)
		}
	}
}

func TestNewRejectsWhatItCannotCountExactly(t *testing.T) {
	const day = 24 * time.Hour
	largest := int64(MaxScaled / 86_400_000) // limit 1 per day: Unit = 86,400,000
	if _, err := New(1, day, largest); err != nil {
		t.Fatalf("burst %d per day: %v", largest, err)
	}
	for _, tc := range []struct {
		limit  int64
		window time.Duration
		burst  int64
	}{
		{1, day, largest + 1},
		{1, day, MaxScaled},     // burst × Unit needs more than 64 bits
		{1, day, math.MaxInt64}, // and so does this one
		{0, time.Second, 0},
		{-5, time.Second, 0},
		{5, 0, 0},
		{5, -time.Second, 0},
		{5, time.Millisecond / 2, 0},
		{5, 1001 * time.Microsecond, 0},
		{5, time.Second, -1},
		{MaxScaled + 1, time.Second, 1},
	} {
		if _, err := New(tc.limit, tc.window, tc.burst); !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("New(%d, %v, %d): err = %v, want ErrInvalidPolicy", tc.limit, tc.window, tc.burst, err)
		}
	}
}

func TestDecideTreatsAZeroStateAsAFullBucket(t *testing.T) {
	p, _ := New(10, time.Second, 0)
	got := Decide(&State{}, p, 5000, OpAllow, 0)
	if !got.Allowed || got.Remaining != 10 || got.ResetAfter != 0 {
		t.Fatalf("zero State: %+v, want a full bucket", got)
	}
}

func TestDecideWithTheCallersClockBehindTheState(t *testing.T) {
	p, _ := New(10, time.Second, 0) // Unit 100, Rate 1
	// Another instance, whose clock is 40ms ahead, emptied the bucket.
	st := State{Bal: 0, TS: 10_040, Unit: p.Unit}
	got := Decide(&st, p, 10_000, OpAllow, 1)
	if got.Allowed || got.RetryAfter != 140 || got.ResetAfter != 1040 {
		t.Fatalf("%+v: want denied, RetryAfter 140ms (40 of skew + 100), ResetAfter 1040ms", got)
	}
	// Time never runs backwards for the bucket.
	got = Decide(&st, p, 10_000, OpRefund, 1)
	if got.State.TS != 10_040 {
		t.Fatalf("state time moved back to %d", got.State.TS)
	}
}

func TestDecideAfterACenturyIdleDoesNotOverflow(t *testing.T) {
	p, _ := New(MaxScaled, time.Millisecond, 1)
	st := State{Bal: -p.Cap(), TS: 0, Unit: p.Unit}
	century := int64(100 * 365 * 24 * time.Hour / time.Millisecond)
	got := Decide(&st, p, century, OpAllow, 1)
	if !got.Allowed || got.State.Bal != 0 {
		t.Fatalf("%+v: want the bucket refilled and one unit taken", got)
	}
}

func TestRefundOfManyTimesTheBurstFillsTheBucketAndNoMore(t *testing.T) {
	p, _ := New(1, 24*time.Hour, MaxScaled/86_400_000)
	st := State{Bal: 0, TS: 0, Unit: p.Unit}
	got := Decide(&st, p, 0, OpRefund, 1<<62)
	if got.State.Bal != p.Cap() || !got.Allowed || got.Remaining != p.Burst {
		t.Fatalf("%+v: want a full bucket", got)
	}
}
