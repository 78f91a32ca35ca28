package budget_test

import (
	"math/rand/v2"
	"testing"
	"time"
	_ "time/tzdata"

	"github.com/gatekit/gatekit/budget"
)

func mustLoad(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestPeriodBoundaries(t *testing.T) {
	ny := mustLoad(t, "America/New_York")
	saoPaulo := mustLoad(t, "America/Sao_Paulo")
	utc := func(y int, m time.Month, d, hh, mm int) time.Time { return time.Date(y, m, d, hh, mm, 0, 0, time.UTC) }
	cases := []struct {
		p          budget.Period
		t          time.Time
		loc        *time.Location
		start, end time.Time
	}{
		{budget.Daily, utc(2030, 1, 15, 10, 0), nil, utc(2030, 1, 15, 0, 0), utc(2030, 1, 16, 0, 0)},
		{budget.Daily, utc(2030, 12, 31, 23, 59), time.UTC, utc(2030, 12, 31, 0, 0), utc(2031, 1, 1, 0, 0)},
		// 02:30 UTC on the 11th is 22:30 EDT on the 10th, a 23-hour day.
		{budget.Daily, utc(2030, 3, 11, 2, 30), ny, utc(2030, 3, 10, 5, 0), utc(2030, 3, 11, 4, 0)},
		// A 25-hour day.
		{budget.Daily, utc(2030, 11, 4, 4, 59), ny, utc(2030, 11, 3, 4, 0), utc(2030, 11, 4, 5, 0)},
		// Sao Paulo skipped midnight on 2018-11-04: the day began at 01:00.
		{budget.Daily, utc(2018, 11, 4, 3, 0), saoPaulo, utc(2018, 11, 4, 3, 0), utc(2018, 11, 5, 2, 0)},
		{budget.Daily, utc(2018, 11, 4, 2, 59), saoPaulo, utc(2018, 11, 3, 3, 0), utc(2018, 11, 4, 3, 0)},
		// Weeks start on Monday; 2030-01-14 is one.
		{budget.Weekly, utc(2030, 1, 14, 0, 0), nil, utc(2030, 1, 14, 0, 0), utc(2030, 1, 21, 0, 0)},
		{budget.Weekly, utc(2030, 1, 20, 23, 59), nil, utc(2030, 1, 14, 0, 0), utc(2030, 1, 21, 0, 0)},
		{budget.Weekly, utc(2030, 1, 1, 12, 0), nil, utc(2029, 12, 31, 0, 0), utc(2030, 1, 7, 0, 0)},
		// The week of the spring change lasts 167 hours.
		{budget.Weekly, utc(2030, 3, 11, 3, 59), ny, utc(2030, 3, 4, 5, 0), utc(2030, 3, 11, 4, 0)},
		{budget.Monthly, utc(2030, 2, 28, 12, 0), nil, utc(2030, 2, 1, 0, 0), utc(2030, 3, 1, 0, 0)},
		{budget.Monthly, utc(2032, 2, 29, 12, 0), nil, utc(2032, 2, 1, 0, 0), utc(2032, 3, 1, 0, 0)},
		{budget.Monthly, utc(2030, 12, 15, 0, 0), nil, utc(2030, 12, 1, 0, 0), utc(2031, 1, 1, 0, 0)},
		// November in New York starts in EDT and ends in EST.
		{budget.Monthly, utc(2030, 11, 15, 0, 0), ny, utc(2030, 11, 1, 4, 0), utc(2030, 12, 1, 5, 0)},
		// 03:00 UTC on Nov 1st is still October in New York.
		{budget.Monthly, utc(2030, 11, 1, 3, 0), ny, utc(2030, 10, 1, 4, 0), utc(2030, 11, 1, 4, 0)},
		{budget.None, utc(2030, 1, 15, 10, 0), ny, time.Time{}, time.Time{}},
	}
	for _, c := range cases {
		start, end := c.p.Start(c.t, c.loc), c.p.End(c.t, c.loc)
		if !start.Equal(c.start) || !end.Equal(c.end) {
			t.Errorf("%v at %v in %v: [%v, %v), want [%v, %v)", c.p, c.t, c.loc, start, end, c.start, c.end)
		}
		if c.loc != nil && !start.IsZero() && start.Location() != c.loc {
			t.Errorf("%v at %v: Start in %v, want %v", c.p, c.t, start.Location(), c.loc)
		}
	}
}

// TestPeriodsTileTheTimeline checks, at random instants in zones with odd
// clock changes, that each instant lies in its period and that each period
// ends where the next one starts, at a local midnight.
func TestPeriodsTileTheTimeline(t *testing.T) {
	zones := []string{"UTC", "America/New_York", "America/Sao_Paulo", "Asia/Beirut", "Australia/Lord_Howe", "Pacific/Apia", "America/St_Johns", "Asia/Kathmandu"}
	rng := rand.New(rand.NewPCG(5, 6))
	lo := time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	hi := time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	for _, name := range zones {
		loc := mustLoad(t, name)
		for range 3000 {
			at := time.Unix(lo+rng.Int64N(hi-lo), 0)
			for _, p := range []budget.Period{budget.Daily, budget.Weekly, budget.Monthly} {
				start, end := p.Start(at, loc), p.End(at, loc)
				if start.After(at) || !end.After(at) {
					t.Fatalf("%s %v at %v: [%v, %v) does not contain it", name, p, at.In(loc), start, end)
				}
				if next := p.Start(end, loc); !next.Equal(end) {
					t.Fatalf("%s %v at %v: ends at %v but the next one starts at %v", name, p, at.In(loc), end, next)
				}
				if prev := p.End(start.Add(-time.Second), loc); !prev.Equal(start) {
					t.Fatalf("%s %v at %v: starts at %v but the previous one ends at %v", name, p, at.In(loc), start, prev)
				}
				if h, m, _ := start.Clock(); (h != 0 || m != 0) && !clockChangeAt(start) {
					t.Fatalf("%s %v at %v: starts at %v, not at midnight", name, p, at.In(loc), start)
				}
			}
		}
	}
}

// clockChangeAt reports whether the zone's offset changes at t.
func clockChangeAt(t time.Time) bool {
	start, _ := t.ZoneBounds()
	return start.Equal(t)
}

func TestParsePeriod(t *testing.T) {
	for _, p := range []budget.Period{budget.None, budget.Daily, budget.Weekly, budget.Monthly} {
		if got, err := budget.ParsePeriod(p.String()); err != nil || got != p {
			t.Errorf("ParsePeriod(%q) = %v, %v", p.String(), got, err)
		}
	}
	if got, err := budget.ParsePeriod("lifetime"); err != nil || got != budget.None {
		t.Errorf(`ParsePeriod("lifetime") = %v, %v`, got, err)
	}
	if _, err := budget.ParsePeriod("hourly"); err == nil {
		t.Error(`ParsePeriod("hourly") succeeded`)
	}
}
