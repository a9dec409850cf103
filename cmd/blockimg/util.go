package main

import (
	"bytes"
	"fmt"
	"sync"
	"unsafe"
)

func uintptrOf(b []byte) uintptr {
	if len(b) == 0 {
		return 0
	}
	return uintptr(unsafe.Pointer(&b[0]))
}

// progress prints qemu-img's "    (12.34/100%)\r" progress lines on
// stdout, at most once per percent.
type progress struct {
	mu   sync.Mutex
	e    *env
	last float64
}

func newProgress(e *env) *progress { return &progress{e: e, last: -1} }

func (p *progress) print(v float64) {
	fmt.Fprintf(p.e.out, "    (%3.2f/100%%)\r", v)
	p.e.out.Flush()
	p.last = v
}

func (p *progress) update(v float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v-p.last >= 1 || (v >= 100 && p.last < 100) {
		p.print(v)
	}
}

func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.print(100)
	fmt.Fprintf(p.e.out, "\n")
	p.e.out.Flush()
}

// zeroPage is compared against with bytes.Equal, which uses the
// platform's vectorised memcmp: several times faster than a byte loop.
var zeroPage [64 << 10]byte

// isZero reports whether p is all zeros.
func isZero(p []byte) bool {
	for len(p) > 0 {
		n := min(len(p), len(zeroPage))
		if !bytes.Equal(p[:n], zeroPage[:n]) {
			return false
		}
		p = p[n:]
	}
	return true
}
