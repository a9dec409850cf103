package throttle

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
)

func TestFakeClock(t *testing.T) {
	c := NewFakeClock(10)
	var got []string
	rec := func(s string) func() {
		return func() { got = append(got, fmt.Sprintf("%s@%d", s, c.Now())) }
	}
	c.AfterFunc(5, rec("a"))
	tb := c.AfterFunc(3, rec("b"))
	c.AfterFunc(5, rec("c"))
	c.AfterFunc(0, func() {
		rec("d")()
		c.AfterFunc(1, rec("e")) // armed from a timer, due within the same Advance
	})
	if !tb.Stop() || tb.Stop() {
		t.Fatal("Stop should succeed once")
	}
	if n := c.Pending(); n != 3 {
		t.Fatalf("Pending %d", n)
	}
	if when, ok := c.Next(); !ok || when != 10 {
		t.Fatalf("Next %v %v", when, ok)
	}
	c.Advance(5)
	want := []string{"d@10", "e@11", "a@15", "c@15"}
	if !slices.Equal(got, want) {
		t.Fatalf("fired %v, want %v", got, want)
	}
	if c.Now() != 15 || c.Pending() != 0 || c.RunNext() {
		t.Fatal("state after Advance")
	}
	c.AdvanceTo(3) // never backwards
	if c.Now() != 15 {
		t.Fatal("went backwards")
	}
	// Saturation instead of overflow.
	c.AfterFunc(time.Duration(math.MaxInt64), func() {})
	if when, _ := c.Next(); when != math.MaxInt64 {
		t.Fatalf("far timer at %v", when)
	}
	c.Advance(time.Duration(math.MaxInt64))
	if c.Now() != math.MaxInt64 || c.Pending() != 0 {
		t.Fatal("saturated advance")
	}
}
