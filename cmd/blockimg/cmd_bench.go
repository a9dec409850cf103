package main

import (
	"errors"
	"fmt"
	"math"
	"syscall"
	"time"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/qcow2"
)

// benchConfig is a parsed bench command line.
type benchConfig struct {
	fmtName       string
	count, depth  int
	offset        int64
	bufSize, step int64
	pattern       byte
	write         bool
	flushInterval int
	drain         bool
	direct        bool // -t none/off/directsync
	writethrough  bool // -t writethrough/directsync: flush after every write
	nativeAIO     bool // -n / -i native: needs direct
	forceShare    bool
}

// cmdBench implements "bench": it sends count read or write requests of
// bufSize bytes each, depth of them in flight at a time, starting at
// offset and advancing by step (wrapping as qemu-img does), and reports
// the run time. Arguments, messages, exit codes, the request sequence and
// the flush schedule (--flush-interval, --no-drain) follow qemu-img 7.2.
func cmdBench(e *env, args []string) int {
	opts, operands, err := getopt(args, "hc:d:f:ni:o:qs:S:t:wU", []longOpt{
		{name: "help", key: "h"},
		{name: "flush-interval", hasArg: true},
		{name: "pattern", hasArg: true},
		{name: "no-drain"},
		{name: "force-share", key: "U"},
	})
	if err != nil {
		return e.usage("%v", err)
	}
	c := benchConfig{count: 75000, depth: 64, bufSize: 4096, drain: true}
	ok := true
	for _, op := range opts {
		switch op.key {
		case "h":
			printHelp(e)
			return 0
		case "c":
			if c.count, ok = benchInt(e, op.val, "request count"); !ok {
				return 1
			}
		case "d":
			if c.depth, ok = benchInt(e, op.val, "queue depth"); !ok {
				return 1
			}
		case "f":
			c.fmtName = op.val
		case "n":
			c.nativeAIO = true
		case "i":
			switch op.val {
			case "native":
				c.nativeAIO = true
			case "threads", "io_uring":
				c.nativeAIO = false
			default:
				e.errorf("Invalid aio option: %s", op.val)
				return 1
			}
		case "o":
			if c.offset, ok = e.cvtnum("offset", op.val, 0, math.MaxInt64); !ok {
				return 1
			}
		case "q":
			// qemu-img bench prints its report even with -q.
		case "s":
			if c.bufSize, ok = e.cvtnum("buffer size", op.val, 0, math.MaxInt32); !ok {
				return 1
			}
		case "S":
			if c.step, ok = e.cvtnum("step_size", op.val, 0, math.MaxInt32); !ok {
				return 1
			}
		case "t":
			switch op.val {
			case "none", "off":
				c.direct, c.writethrough = true, false
			case "directsync":
				c.direct, c.writethrough = true, true
			case "writeback", "unsafe":
				c.direct, c.writethrough = false, false
			case "writethrough":
				c.direct, c.writethrough = false, true
			default:
				e.errorf("Invalid cache mode")
				return 1
			}
		case "w":
			c.write = true
		case "U":
			c.forceShare = true
		case "--pattern":
			v, ok := parseUlong(op.val)
			if !ok || v > 0xff {
				e.errorf("Invalid pattern byte specified")
				return 1
			}
			c.pattern = byte(v)
		case "--flush-interval":
			if c.flushInterval, ok = benchInt(e, op.val, "flush interval"); !ok {
				return 1
			}
		case "--no-drain":
			c.drain = false
		}
	}
	if len(operands) != 1 {
		return e.usage("Expecting one image file name")
	}
	path := operands[0]
	if !c.write && c.flushInterval != 0 {
		e.errorf("--flush-interval is only available in write tests")
		return 1
	}
	if c.flushInterval != 0 && c.flushInterval < c.depth {
		e.errorf("Flush interval can't be smaller than depth")
		return 1
	}
	if c.step == 0 {
		c.step = c.bufSize
	}
	im, err := openBenchImage(e, path, &c)
	if err != nil {
		e.errorf("%v", err)
		return 1
	}
	defer im.Close()

	verb := "read"
	if c.write {
		verb = "write"
	}
	fmt.Fprintf(e.out, "Sending %d %s requests, %d bytes each, %d in parallel (starting at offset %d, step size %d)\n",
		c.count, verb, c.bufSize, c.depth, c.offset, c.step)
	if c.flushInterval != 0 {
		fmt.Fprintf(e.out, "Sending flush every %d requests\n", c.flushInterval)
	}
	e.out.Flush()
	if c.depth == 0 && c.count > 0 {
		// qemu-img waits forever for requests it never sends.
		e.errorf("Queue depth 0 sends no requests; use -d 1 or more")
		return 1
	}
	if mem := benchMemory(&c); mem > benchMaxMemory {
		// qemu-img aborts when it cannot allocate depth buffers.
		e.errorf("Requests would need %d bytes of buffers (%d in parallel, %d bytes each); the limit is %d: Cannot allocate memory",
			mem, min(c.depth, c.count), c.bufSize, int64(benchMaxMemory))
		return 1
	}
	start := time.Now()
	if err := runBench(im.dev, &c); err != nil {
		e.errorf("Failed request: %s", benchErrText(err))
		return 1
	}
	elapsed := time.Since(start)
	if err := im.Close(); err != nil {
		e.errorf("%s", describeErr(err))
		return 1
	}
	fmt.Fprintf(e.out, "Run completed in %3.3f seconds.\n", elapsed.Seconds())
	return 0
}

// openBenchImage opens the image as qemu-img bench does: read-only for
// read tests, with O_DIRECT for cache modes none and directsync.
func openBenchImage(e *env, path string, c *benchConfig) (*image, error) {
	o := openOptions{readOnly: !c.write, noLock: c.forceShare}
	if c.forceShare && c.write {
		return nil, fmt.Errorf("Could not open '%s': force-share=on can only be used with read-only images", path)
	}
	if c.nativeAIO && !c.direct {
		return nil, fmt.Errorf("Could not open '%s': aio=native was specified, but it requires cache.direct=on, which was not specified.", path)
	}
	im, err := openImage(path, c.fmtName, o)
	if err != nil {
		return nil, err
	}
	if im.probed && im.fmt.name == "raw" && c.write {
		warnProbedRaw(e, path)
	}
	if !c.direct {
		return im, nil
	}
	// Reopen raw and qcow2 images with O_DIRECT; other formats keep the
	// page cache.
	var dev blockio.Device
	switch im.fmt.name {
	case "raw":
		im.Close()
		im.dev = nil
		dev, err = blockio.OpenFile(path, blockio.FileOptions{ReadOnly: o.readOnly, NoLock: o.noLock, Direct: true})
	case "qcow2":
		im.Close()
		im.dev = nil
		dev, err = qcow2.OpenFile(path, qcow2.Options{ReadOnly: o.readOnly, NoLock: o.noLock, Direct: true})
	default:
		return im, nil
	}
	if err != nil {
		return nil, openFailed(path, err)
	}
	if im.probed && im.fmt.name == "raw" && c.write {
		dev = &probedRaw{Device: dev}
	}
	im.dev = dev
	return im, nil
}

// benchMaxMemory bounds what a run allocates: a buffer and a goroutine
// (benchWorkerCost) per request in flight.
const (
	benchMaxMemory  = 1 << 30
	benchWorkerCost = 8 << 10
)

// benchMemory estimates the bytes a run's workers need. depth and count
// are at most MaxInt32 and bufSize at most MaxInt32, so it cannot
// overflow.
func benchMemory(c *benchConfig) int64 {
	return int64(min(c.depth, c.count)) * (c.bufSize + benchWorkerCost)
}

// errBenchRange is a request outside the image (qemu's EIO).
var errBenchRange = syscall.EIO

// benchEvent is the completion of a request or a flush.
type benchEvent struct {
	flush   bool
	drained bool // a flush issued with the queue drained
	err     error
}

// runBench issues the requests. The scheduling mirrors qemu-img's
// callback: a completion starts new requests while fewer than depth are
// in flight; with a flush interval, when the number of requests not yet
// started is a multiple of it, new requests wait until the queue is
// empty and a flush has completed (or, with --no-drain, a flush is sent
// beside the running requests).
func runBench(dev blockio.Device, c *benchConfig) error {
	size := dev.Size()
	workers := min(c.depth, c.count)
	jobs := make(chan int64)
	events := make(chan benchEvent, workers+1)
	for w := 0; w < workers; w++ {
		go func() {
			buf := make([]byte, c.bufSize)
			if c.write && c.pattern != 0 {
				for i := range buf {
					buf[i] = c.pattern
				}
			}
			for off := range jobs {
				events <- benchEvent{err: benchRequest(dev, c, buf, off, size)}
			}
		}()
	}
	defer close(jobs)

	n, inFlight, flushes := c.count, 0, 0
	offset := c.offset
	inFlush := false
	var firstErr error
	flush := func(drained bool) {
		flushes++
		go func() { events <- benchEvent{flush: true, drained: drained, err: dev.Flush()} }()
	}
	submit := func() {
		for firstErr == nil && n > inFlight && inFlight < c.depth {
			off := offset
			inFlight++
			// qemu-img 7.2 wraps at the image size, so a request
			// may reach past the end and fail; it crashes on an
			// empty image, where blockimg stays at offset 0.
			offset += c.step
			if size > 0 {
				offset %= size
			} else {
				offset = 0
			}
			jobs <- off
		}
	}
	submit()
	for inFlight > 0 || flushes > 0 || (firstErr == nil && n > 0 && !inFlush) {
		ev := <-events
		if ev.err != nil && firstErr == nil {
			firstErr = ev.err
		}
		if ev.flush {
			flushes--
			if ev.drained {
				inFlush = false
				submit()
			}
			continue
		}
		remaining := n - inFlight
		n--
		inFlight--
		if c.flushInterval != 0 && remaining%c.flushInterval == 0 {
			if firstErr == nil && (inFlight == 0 || !c.drain) {
				if c.drain {
					inFlush = true
				}
				flush(c.drain)
			}
			if c.drain {
				continue
			}
		}
		submit()
	}
	return firstErr
}

// benchRequest performs one read or write of len(buf) bytes at off.
func benchRequest(dev blockio.Device, c *benchConfig, buf []byte, off, size int64) error {
	if off < 0 || off > size || size-off < int64(len(buf)) {
		return errBenchRange
	}
	if len(buf) == 0 {
		return nil
	}
	if !c.write {
		_, err := dev.ReadAt(buf, off)
		return err
	}
	if _, err := dev.WriteAt(buf, off); err != nil {
		return err
	}
	if c.writethrough {
		return dev.Flush()
	}
	return nil
}

// benchErrText words a failed request as strerror does.
func benchErrText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return capitalize(errno.Error())
	}
	if errors.Is(err, blockio.ErrOutOfRange) {
		return "Input/output error"
	}
	return describeErr(err)
}

// benchInt parses a non-negative int option as qemu-img bench does,
// printing "Invalid <what> specified" when it is not one.
func benchInt(e *env, val, what string) (int, bool) {
	v, ok := parseUlong(val)
	if !ok || v > math.MaxInt32 {
		e.errorf("Invalid %s specified", what)
		return 0, false
	}
	return int(v), true
}
