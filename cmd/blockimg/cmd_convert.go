package main

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/blocklayer/blocklayer/blockio"
)

const (
	convertChunk     = 2 << 20 // bytes per data task
	convertMaxZero   = 1 << 30 // bytes per zero/skip task
	defaultMinSparse = 4096
)

// compressedTarget is a destination that stores whole clusters compressed
// (qcow2 -c, streamOptimized vmdk).
type compressedTarget struct {
	clusterSize int64
	write       func(p []byte, off int64) error
	// ordered is true when the target needs writes in increasing offset
	// order (a stream format); compression then still runs in parallel,
	// but writes are issued in order.
	ordered bool
}

func cmdConvert(e *env, args []string) int {
	opts, operands, err := getopt(args, "hf:O:B:CcF:o:l:S:pt:T:qnm:WUr:", []longOpt{
		{name: "help", key: "h"},
		{name: "force-share", key: "U"},
		{name: "target-is-zero"},
		{name: "salvage"},
	})
	if err != nil {
		return e.usage("%v", err)
	}
	c := &converter{workers: 8, minSparse: defaultMinSparse}
	var srcFmt, dstFmt, backing, backingFmt string
	var dstOpts *optList
	noCreate, progress := false, false
	for _, op := range opts {
		switch op.key {
		case "h":
			printHelp(e)
			return 0
		case "f":
			srcFmt = op.val
		case "O":
			dstFmt = op.val
		case "B":
			backing = op.val
		case "F":
			backingFmt = op.val
		case "c":
			c.compress = true
		case "o":
			if dstOpts, err = parseOptList(dstOpts, op.val); err != nil {
				e.errorf("%v", err)
				return 1
			}
		case "S":
			v, err := parseSize(op.val)
			if err != nil || v%512 != 0 || v > 16<<20 {
				e.errorf("Invalid buffer size for sparse output specified. Valid sizes are multiples of 512 up to 16777216. Select 0 to disable sparse detection (fully allocates output).")
				return 1
			}
			c.minSparse = v
		case "p":
			progress = true
		case "q":
			e.quiet = true
		case "n":
			noCreate = true
		case "m":
			var n int
			if _, err := fmt.Sscanf(op.val, "%d", &n); err != nil || n < 1 || n > 16 || fmt.Sprint(n) != op.val {
				e.errorf("Invalid number of coroutines. Allowed number of coroutines is between 1 and 16")
				return 1
			}
			c.workers = n
		case "W":
			c.outOfOrder = true
		case "U":
			c.noLock = true
		case "--target-is-zero":
			c.targetIsZero = true
		case "C", "t", "T", "--salvage":
			// Cache modes and copy offloading do not apply: blockimg
			// always writes through the page cache and flushes at the end.
		case "l":
			e.errorf("Snapshot parameters are not supported")
			return 1
		case "r":
			e.errorf("Rate limits are not supported")
			return 1
		}
	}
	if e.quiet {
		progress = false
	}
	if dstOpts.wantsHelp() {
		if dstFmt == "" {
			dstFmt = "raw"
		}
		f, err := lookupFormat(dstFmt)
		if err != nil {
			e.errorf("%v", err)
			return 1
		}
		printOptionHelp(e, f)
		return 0
	}
	if len(operands) < 2 {
		return e.usage("Must specify image file name")
	}
	if len(operands) > 2 {
		e.errorf("Converting more than one source image is not supported")
		return 1
	}
	if dstFmt == "" {
		dstFmt = "raw"
	}
	if dstOpts == nil {
		dstOpts = &optList{used: map[string]bool{}}
	}
	srcPath, dstPath := operands[0], operands[1]
	if c.targetIsZero && !noCreate {
		e.errorf("--target-is-zero requires use of -n flag")
		return 1
	}

	src, err := openImage(srcPath, srcFmt, openOptions{readOnly: true, noLock: c.noLock})
	if err != nil {
		e.errorf("%v", err)
		return 1
	}
	defer src.Close()
	df, err := lookupFormat(dstFmt)
	if err != nil {
		e.errorf("%v", err)
		return 1
	}
	if c.compress && df.compressed == nil {
		e.errorf("Compression not supported for this file format")
		return 1
	}
	srcSize := src.dev.Size()
	if f := sourceFileAt(srcPath, src.fmt.name, dstPath); f != "" {
		e.errorf("Could not open '%s': it is the source image or part of its backing chain ('%s')", dstPath, f)
		return 1
	}
	var dst *image
	if !noCreate {
		p := &createParams{size: srcSize, opts: dstOpts, backing: backing, backingFmt: backingFmt}
		if backing != "" && backingFmt == "" {
			// qemu-img convert probes the backing format when -F is absent.
			if hdr, err := readHeader(pathCombine(dstPath, backing)); err == nil {
				p.backingFmt = probeFormat(hdr)
			}
		}
		ce := *e
		ce.quiet = true
		dev, err := createImage(&ce, df, dstPath, p)
		if err != nil {
			e.errorf("%s: %v", dstPath, err)
			return 1
		}
		dst = &image{path: dstPath, fmt: df, dev: dev}
		backing = p.backing // -o backing_file=... counts as -B
	} else {
		// qemu-img ignores -o with -n; so do we.
		if dst, err = openImage(dstPath, dstFmt, openOptions{readOnly: false, noLock: c.noLock}); err != nil {
			e.errorf("%v", err)
			return 1
		}
	}
	defer dst.Close()
	if noCreate && dst.dev.Size() < srcSize {
		e.errorf("output file is smaller than input file")
		return 1
	}
	c.src, c.dst, c.size = src.dev, dst.dev, srcSize
	c.zeroInit = (!noCreate && backing == "" && df.zeroInit) || c.targetIsZero
	c.targetHasBacking = backing != ""
	if c.compress {
		ct, err := df.compressed(dst.dev)
		if err != nil {
			e.errorf("%v", err)
			return 1
		}
		c.ct = ct
	}
	if df.sequential != nil && df.sequential(dst.dev) {
		c.outOfOrder = false
	}
	if progress {
		c.progress = newProgress(e)
		c.progress.print(0)
	}
	err = c.run()
	if err == nil {
		if ferr := dst.dev.Flush(); ferr != nil {
			err = fmt.Errorf("error while flushing %s: %s", dstPath, describeErr(ferr))
		}
	}
	if cerr := dst.dev.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("error while closing %s: %s", dstPath, describeErr(cerr))
	}
	dst.dev = nil
	if c.progress != nil {
		c.progress.finish()
	}
	if err != nil {
		e.errorf("%v", err)
		return 1
	}
	return 0
}

// sourceFileAt returns the name of the source chain's file that dst is
// (the same inode), or "". Writing there would destroy the data being
// read; qemu-img refuses through its image locks, which not every format
// package takes, so blockimg checks explicitly.
func sourceFileAt(srcPath, srcFmt, dstPath string) string {
	dst, err := os.Stat(dstPath)
	if err != nil {
		return ""
	}
	files := []string{srcPath}
	if infos, err := collectInfo(srcPath, srcFmt, openOptions{readOnly: true, noBacking: true, noLock: true}, true); err == nil {
		for _, in := range infos {
			files = append(files, in.Filename)
			if in.FormatSpecific == nil {
				continue
			}
			n, err := toQNode(in.FormatSpecific.Data)
			if err != nil || n.kind != 'o' {
				continue
			}
			if df := n.get("data-file"); df != nil && df.kind == 's' {
				files = append(files, pathCombine(in.Filename, df.str))
			}
			if ex := n.get("extents"); ex != nil {
				for _, it := range ex.items {
					if fn := it.get("filename"); fn != nil && fn.kind == 's' {
						files = append(files, fn.str)
					}
				}
			}
		}
	}
	for _, f := range files {
		if st, err := os.Stat(f); err == nil && os.SameFile(st, dst) {
			return f
		}
	}
	return ""
}

// converter copies src to dst with parallel workers.
type converter struct {
	src, dst         blockio.Device
	size             int64
	workers          int
	outOfOrder       bool
	compress         bool
	ct               *compressedTarget
	minSparse        int64
	zeroInit         bool // dst already reads as zeros everywhere
	targetIsZero     bool
	targetHasBacking bool // skip ranges the source's own layer does not hold
	noLock           bool
	progress         *progress

	mu     sync.Mutex // guards the planner state below
	pos    int64
	ext    blockio.Extent // last source extent seen
	seq    int64
	failed error

	turnMu sync.Mutex
	turn   *sync.Cond
	next   int64 // sequence number allowed to write next

	done atomic.Int64
}

// writeErr words a target write failure as qemu-img does.
func writeErr(off int64, err error) error {
	return fmt.Errorf("error while writing at byte %d: %s", off, describeErr(err))
}

type taskKind int

const (
	taskData taskKind = iota
	taskZero          // source reads as zeros
	taskSkip          // leave to the target's backing file
)

type task struct {
	seq    int64
	off, n int64
	kind   taskKind
}

// classify maps a source extent to what the target needs.
func (c *converter) classify(x blockio.Extent) taskKind {
	if c.targetHasBacking && (!x.Allocated || x.Depth > 0) {
		return taskSkip
	}
	if (x.Zero || !x.Data) && c.minSparse != 0 {
		return taskZero
	}
	// With -S 0 the target is fully allocated: zeros are copied as data.
	return taskData
}

// extentAt returns the source extent covering pos (cached).
func (c *converter) extentAt(pos int64) (blockio.Extent, error) {
	if c.ext.Length > 0 && pos >= c.ext.Start && pos < c.ext.End() {
		x := c.ext
		d := pos - x.Start
		x.Start, x.Length = pos, x.Length-d
		if x.Offset >= 0 {
			x.Offset += d
		}
		return x, nil
	}
	x, err := blockio.BlockStatus(c.src, pos, c.size-pos)
	if err != nil {
		return x, err
	}
	if x.Length <= 0 || x.Start != pos {
		x = blockio.Extent{Start: pos, Length: c.size - pos, Data: true, Allocated: true, Offset: -1}
	}
	c.ext = x
	return x, nil
}

// kindAt classifies the source from pos on and returns how many bytes
// share that kind. In compressed mode the unit is a target cluster: a
// cluster holding any data is data.
func (c *converter) kindAt(pos int64) (taskKind, int64, error) {
	x, err := c.extentAt(pos)
	if err != nil {
		return 0, 0, err
	}
	k := c.classify(x)
	if c.ct == nil {
		return k, x.Length, nil
	}
	cs := c.ct.clusterSize
	cend := min(pos+cs, c.size)
	if x.End() >= cend {
		span := x.End() - pos
		if x.End() < c.size {
			span -= span % cs
		}
		return k, span, nil
	}
	for p := x.End(); p < cend; {
		y, err := c.extentAt(p)
		if err != nil {
			return 0, 0, err
		}
		if c.classify(y) != k {
			k = taskData
		}
		p = y.End()
	}
	return k, cend - pos, nil
}

// nextTask hands out the next piece of work in source order. Data tasks
// never cross a 2 MiB boundary, so buffers and target clusters line up.
func (c *converter) nextTask() (task, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failed != nil {
		return task{}, false, c.failed
	}
	if c.pos >= c.size {
		return task{}, false, nil
	}
	t := task{seq: c.seq, off: c.pos}
	c.seq++
	var limit int64
	for c.pos < c.size {
		k, span, err := c.kindAt(c.pos)
		if err != nil {
			err = fmt.Errorf("error while reading block status at offset %d: %s", c.pos, describeErr(err))
			c.failed = err
			return task{}, false, err
		}
		if c.pos == t.off {
			t.kind = k
			limit = convertMaxZero
			if k == taskData {
				limit = convertChunk - t.off%convertChunk
			}
		} else if k != t.kind {
			break
		}
		take := min(span, t.off+limit-c.pos)
		if take <= 0 {
			break
		}
		c.pos += take
		if c.pos-t.off >= limit {
			break
		}
	}
	t.n = c.pos - t.off
	return t, true, nil
}

func (c *converter) fail(err error) {
	c.mu.Lock()
	if c.failed == nil {
		c.failed = err
	}
	c.mu.Unlock()
	c.turnMu.Lock()
	c.turn.Broadcast()
	c.turnMu.Unlock()
}

// waitTurn blocks until task seq may write (in-order mode).
func (c *converter) waitTurn(seq int64) error {
	c.turnMu.Lock()
	defer c.turnMu.Unlock()
	for c.next != seq {
		c.mu.Lock()
		err := c.failed
		c.mu.Unlock()
		if err != nil {
			return err
		}
		c.turn.Wait()
	}
	return nil
}

func (c *converter) endTurn() {
	c.turnMu.Lock()
	c.next++
	c.turn.Broadcast()
	c.turnMu.Unlock()
}

func (c *converter) run() error {
	c.turn = sync.NewCond(&c.turnMu)
	workers := max(1, c.workers)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.worker()
		}()
	}
	wg.Wait()
	return c.failed
}

func (c *converter) worker() {
	buf := alignedBuf(convertChunk)
	ordered := !c.outOfOrder
	for {
		t, ok, err := c.nextTask()
		if err != nil || !ok {
			if err != nil {
				c.fail(err)
			}
			return
		}
		var werr error
		var woff int64
		switch t.kind {
		case taskData:
			p := buf[:t.n]
			if _, err := c.src.ReadAt(p, t.off); err != nil {
				c.fail(fmt.Errorf("error while reading at byte %d: %s", t.off, describeErr(err)))
				return
			}
			if c.ct != nil {
				woff, werr = c.writeCompressed(t, p, ordered)
				if werr != nil {
					c.fail(writeErr(woff, werr))
					return
				}
				c.addProgress(t.n)
				continue
			}
			if ordered {
				if c.waitTurn(t.seq) != nil {
					return
				}
			}
			woff, werr = c.writeData(p, t.off)
		case taskZero:
			if ordered {
				if c.waitTurn(t.seq) != nil {
					return
				}
			}
			if !c.zeroInit {
				woff, werr = t.off, blockio.WriteZeroes(c.dst, t.off, t.n, true)
			}
		case taskSkip:
			if ordered {
				if c.waitTurn(t.seq) != nil {
					return
				}
			}
		}
		if werr != nil {
			c.fail(writeErr(woff, werr))
			return
		}
		if ordered {
			c.endTurn()
		}
		c.addProgress(t.n)
	}
}

func (c *converter) addProgress(n int64) {
	d := c.done.Add(n)
	if c.progress != nil {
		c.progress.update(float64(d) * 100 / float64(max(c.size, 1)))
	}
}

// writeData writes p at off, leaving out runs of zeros at least minSparse
// long (they stay holes on a zero-initialised target and are written as
// zeroes otherwise).
func (c *converter) writeData(p []byte, off int64) (int64, error) {
	if c.minSparse == 0 {
		_, err := c.dst.WriteAt(p, off)
		return off, err
	}
	bs := int(c.minSparse)
	i := 0
	for i < len(p) {
		// Data run: up to the next aligned zero block of bs bytes.
		j := i
		for j < len(p) {
			end := min(len(p), (j/bs+1)*bs)
			if end-j == bs && isZero(p[j:end]) {
				break
			}
			j = end
		}
		if j > i {
			if _, err := c.dst.WriteAt(p[i:j], off+int64(i)); err != nil {
				return off + int64(i), err
			}
		}
		// Zero run.
		k := j
		for k < len(p) {
			end := min(len(p), k+bs)
			if !isZero(p[k:end]) {
				break
			}
			k = end
		}
		if k > j && !c.zeroInit {
			if err := blockio.WriteZeroes(c.dst, off+int64(j), int64(k-j), true); err != nil {
				return off + int64(j), err
			}
		}
		i = k
	}
	return off, nil
}

// writeCompressed writes a data task (cluster-aligned, see kindAt)
// cluster by cluster through the target's compressed writer. Zero clusters
// on a zero-initialised target are skipped. Unless the target needs
// ordered writes, tasks compress and write concurrently.
func (c *converter) writeCompressed(t task, p []byte, ordered bool) (int64, error) {
	cs := c.ct.clusterSize
	if ordered {
		if err := c.waitTurn(t.seq); err != nil {
			return t.off, err
		}
		if c.ct.ordered {
			defer c.endTurn()
		} else {
			c.endTurn()
		}
	}
	for i := int64(0); i < t.n; i += cs {
		chunk := p[i:min(i+cs, t.n)]
		if c.zeroInit && isZero(chunk) {
			continue
		}
		if err := c.ct.write(chunk, t.off+i); err != nil {
			return t.off + i, err
		}
	}
	return t.off, nil
}

// alignedBuf returns a 4 KiB-aligned buffer of n bytes.
func alignedBuf(n int) []byte {
	const align = 4096
	b := make([]byte, n+align)
	a := int(uintptrOf(b) & (align - 1))
	if a != 0 {
		a = align - a
	}
	return b[a : a+n : a+n]
}
