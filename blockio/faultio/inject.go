package faultio

import (
	"strings"
	"sync"
	"syscall"

	"github.com/blocklayer/blocklayer/blockio"
)

// Op is a set of request kinds.
// Op is a plain value: safe to copy and to read from many goroutines; do not
// modify one another goroutine uses.
type Op uint8

// Request kinds a Rule can match.
const (
	OpRead Op = 1 << iota
	OpWrite
	OpFlush
	OpDiscard
	OpZero // WriteZeroes
	OpTruncate

	OpAll = OpRead | OpWrite | OpFlush | OpDiscard | OpZero | OpTruncate
)

var opNames = []string{"read", "write", "flush", "discard", "write zeroes", "truncate"}

// String returns the kinds in o joined with "|".
func (o Op) String() string {
	var parts []string
	for i, n := range opNames {
		if o&(1<<i) != 0 {
			parts = append(parts, n)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "|")
}

// Rule describes when an Injector fails a request. The zero Rule fails
// every request of every kind with EIO.
// Rule is a plain value: safe to copy and to read from many goroutines; do
// not modify one another goroutine uses.
type Rule struct {
	// Ops selects the request kinds the rule matches; 0 means OpAll.
	Ops Op
	// Errno is the error returned; 0 means EIO.
	Errno syscall.Errno
	// Off and Len restrict the rule to requests overlapping
	// [Off, Off+Len). Len 0 means any request, including flushes (which
	// have no range and never match a rule with Len > 0).
	Off, Len int64
	// Nth makes the rule fire from the Nth matching request on (counting
	// from 1); 0 and 1 both mean the first.
	Nth int
	// Once makes the rule fire a single time and then stay inert.
	Once bool
}

// RuleID names a rule added to an Injector.
// RuleID is a plain value: safe to copy and to read from many goroutines; do
// not modify one another goroutine uses.
type RuleID int

type ruleState struct {
	Rule
	seen, fired int
}

// Injector is a blockio.Device that forwards requests to a base device and
// fails those matched by its rules without forwarding them. It implements
// every optional capability; when the base lacks one, the blockio helper's
// fallback is used.
//
// Injector is safe for concurrent use; rules may be added and removed
// while requests run. Rules are evaluated in the order they were added and
// the first that fires decides the error; every matching rule counts the
// request.
type Injector struct {
	base blockio.Device

	mu     sync.Mutex
	next   RuleID
	rules  map[RuleID]*ruleState
	order  []RuleID
	counts [8]int
}

// NewInjector wraps base. Closing the Injector closes base.
func NewInjector(base blockio.Device) *Injector {
	return &Injector{base: base, rules: make(map[RuleID]*ruleState)}
}

// Base returns the wrapped device.
func (d *Injector) Base() blockio.Device { return d.base }

// overlaps reports whether the request [off, off+n) and the rule range
// [roff, roff+rlen) (n, rlen > 0) share a byte, without computing either
// end, so ranges reaching math.MaxInt64 (Len = math.MaxInt64 for "from Off
// to the end") work. Requests at negative offsets never match.
func overlaps(off, n, roff, rlen int64) bool {
	switch {
	case off < 0:
		return false
	case roff <= 0:
		return rlen+roff > off // rule covers [0, roff+rlen); no overflow: roff <= 0 < rlen
	case off >= roff:
		return off-roff < rlen
	default:
		return roff-off < n
	}
}

// Add installs a rule and returns its id.
func (d *Injector) Add(r Rule) RuleID {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.next++
	d.rules[d.next] = &ruleState{Rule: r}
	d.order = append(d.order, d.next)
	return d.next
}

// Remove uninstalls a rule; unknown ids are ignored.
func (d *Injector) Remove(id RuleID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.rules, id)
	for i, o := range d.order {
		if o == id {
			d.order = append(d.order[:i], d.order[i+1:]...)
			break
		}
	}
}

// Clear removes every rule.
func (d *Injector) Clear() {
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(d.rules)
	d.order = nil
}

// Fired returns how many requests the rule has failed.
func (d *Injector) Fired(id RuleID) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r := d.rules[id]; r != nil {
		return r.fired
	}
	return 0
}

// Count returns how many requests of the kinds in ops the Injector has
// seen, failed or not.
func (d *Injector) Count(ops Op) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for i := range opNames {
		if ops&(1<<i) != 0 {
			n += d.counts[i]
		}
	}
	return n
}

func opIndex(op Op) int {
	for i := range opNames {
		if op == 1<<i {
			return i
		}
	}
	return len(opNames)
}

// check returns the injected error for a request, or nil. off < 0 marks a
// request without a range.
func (d *Injector) check(op Op, off, n int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.counts[opIndex(op)]++
	var fail error
	for _, id := range d.order {
		r := d.rules[id]
		ops := r.Ops
		if ops == 0 {
			ops = OpAll
		}
		if ops&op == 0 {
			continue
		}
		if r.Len > 0 && !overlaps(off, max(n, 1), r.Off, r.Len) {
			continue
		}
		r.seen++
		if fail != nil || r.seen < r.Nth || (r.Once && r.fired > 0) {
			continue
		}
		r.fired++
		errno := r.Errno
		if errno == 0 {
			errno = syscall.EIO
		}
		fail = &blockio.OpError{Op: opNames[opIndex(op)], Path: "faultio", Off: off, Err: errno}
	}
	return fail
}

// ReadAt implements blockio.Device.
func (d *Injector) ReadAt(p []byte, off int64) (int, error) {
	if err := d.check(OpRead, off, int64(len(p))); err != nil {
		return 0, err
	}
	return d.base.ReadAt(p, off)
}

// WriteAt implements blockio.Device.
func (d *Injector) WriteAt(p []byte, off int64) (int, error) {
	if err := d.check(OpWrite, off, int64(len(p))); err != nil {
		return 0, err
	}
	return d.base.WriteAt(p, off)
}

// Size implements blockio.Device.
func (d *Injector) Size() int64 { return d.base.Size() }

// Flush implements blockio.Device.
func (d *Injector) Flush() error {
	if err := d.check(OpFlush, -1, 0); err != nil {
		return err
	}
	return d.base.Flush()
}

// Close implements blockio.Device; it closes the base device.
func (d *Injector) Close() error { return d.base.Close() }

// Discard implements blockio.Discarder.
func (d *Injector) Discard(off, n int64) error {
	if err := d.check(OpDiscard, off, n); err != nil {
		return err
	}
	return blockio.Discard(d.base, off, n)
}

// WriteZeroes implements blockio.ZeroWriter.
func (d *Injector) WriteZeroes(off, n int64, mayUnmap bool) error {
	if err := d.check(OpZero, off, n); err != nil {
		return err
	}
	return blockio.WriteZeroes(d.base, off, n, mayUnmap)
}

// BlockStatus implements blockio.StatusReporter (never fails by rule).
func (d *Injector) BlockStatus(off, n int64) (blockio.Extent, error) {
	return blockio.BlockStatus(d.base, off, n)
}

// Truncate implements blockio.Truncater.
func (d *Injector) Truncate(size int64, prealloc blockio.Prealloc) error {
	if err := d.check(OpTruncate, size, 0); err != nil {
		return err
	}
	return blockio.Truncate(d.base, size, prealloc)
}
