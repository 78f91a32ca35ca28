package budget

import (
	"fmt"
	"time"
)

// Period is how often a budget starts over. Periods follow the calendar of a
// time zone: a Daily budget resets at local midnight, a Weekly one at
// midnight starting Monday, a Monthly one at midnight starting the 1st. The
// zero Period is None.
type Period uint8

// The periods a budget can have.
const (
	// None is no period: a lifetime budget, which never resets.
	None Period = iota
	// Daily resets at midnight.
	Daily
	// Weekly resets at midnight between Sunday and Monday.
	Weekly
	// Monthly resets at midnight starting the first day of each month.
	Monthly
)

// String returns p's name: "none", "daily", "weekly" or "monthly".
func (p Period) String() string {
	switch p {
	case None:
		return "none"
	case Daily:
		return "daily"
	case Weekly:
		return "weekly"
	case Monthly:
		return "monthly"
	}
	return fmt.Sprintf("Period(%d)", uint8(p))
}

// Valid reports whether p is one of the periods above.
func (p Period) Valid() bool { return p <= Monthly }

// ParsePeriod returns the Period named s, as String writes it; "lifetime"
// and "" are accepted for None.
func ParsePeriod(s string) (Period, error) {
	switch s {
	case "none", "lifetime", "":
		return None, nil
	case "daily":
		return Daily, nil
	case "weekly":
		return Weekly, nil
	case "monthly":
		return Monthly, nil
	}
	return None, fmt.Errorf("budget: unknown period %q (want none, daily, weekly or monthly)", s)
}

// Start returns the first instant of the period containing t, in loc (nil
// means UTC), expressed in loc. A period is identified by its start. For None
// it returns the zero Time.
//
// Boundaries are computed on the calendar, not by adding hours: a day in a
// zone with daylight saving time may last 23 or 25 hours, and where a clock
// change skips midnight the day starts at the first instant it has.
func (p Period) Start(t time.Time, loc *time.Location) time.Time {
	if loc == nil {
		loc = time.UTC
	}
	lt := t.In(loc)
	y, m, d := lt.Date()
	switch p {
	case Daily:
		return midnight(y, m, d, loc)
	case Weekly:
		return midnight(y, m, d-daysSinceMonday(lt.Weekday()), loc)
	case Monthly:
		return midnight(y, m, 1, loc)
	}
	return time.Time{}
}

// End returns the first instant after the period containing t: the start of
// the next period, when a budget resets. For None it returns the zero Time.
func (p Period) End(t time.Time, loc *time.Location) time.Time {
	if loc == nil {
		loc = time.UTC
	}
	lt := t.In(loc)
	y, m, d := lt.Date()
	switch p {
	case Daily:
		return midnight(y, m, d+1, loc)
	case Weekly:
		return midnight(y, m, d-daysSinceMonday(lt.Weekday())+7, loc)
	case Monthly:
		return midnight(y, m+1, 1, loc)
	}
	return time.Time{}
}

func daysSinceMonday(wd time.Weekday) int { return (int(wd) + 6) % 7 }

// midnight returns the first instant of the day y-m-d in loc; the date is
// normalized as time.Date does (day 0 is the last day of the previous
// month).
func midnight(y int, m time.Month, d int, loc *time.Location) time.Time {
	y, m, d = time.Date(y, m, d, 12, 0, 0, 0, time.UTC).Date()
	t := time.Date(y, m, d, 0, 0, 0, 0, loc)
	if ty, tm, td := t.Date(); ty != y || tm != m || td != d {
		// Midnight does not exist that day (the clocks jump from 23:59:59
		// to 01:00) and time.Date resolved it to an instant of the day
		// before: the day starts where that day's zone ends.
		_, t = t.ZoneBounds()
	}
	return t
}
