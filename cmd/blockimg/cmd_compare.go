package main

import (
	"bytes"

	"github.com/blocklayer/blocklayer/blockio"
)

const compareBuf = 2 << 20

// Exit codes of qemu-img compare.
const (
	cmpSame      = 0
	cmpDiffer    = 1
	cmpOpenError = 2
	cmpStatusErr = 3
	cmpReadError = 4
)

func cmdCompare(e *env, args []string) int {
	opts, operands, err := getopt(args, "hf:F:T:pqsU", []longOpt{
		{name: "help", key: "h"},
		{name: "force-share", key: "U"},
	})
	if err != nil {
		e.usage("%v", err)
		return cmpOpenError
	}
	var fmt1, fmt2 string
	strict, progressOn := false, false
	o := openOptions{readOnly: true}
	for _, op := range opts {
		switch op.key {
		case "h":
			printHelp(e)
			return 0
		case "f":
			fmt1 = op.val
		case "F":
			fmt2 = op.val
		case "p":
			progressOn = true
		case "q":
			e.quiet = true
		case "s":
			strict = true
		case "U":
			o.noLock = true
		}
	}
	if e.quiet {
		progressOn = false
	}
	if len(operands) != 2 {
		e.usage("Expecting two image file names")
		return cmpOpenError
	}
	a, err := openImage(operands[0], fmt1, o)
	if err != nil {
		e.errorf("%v", err)
		return cmpOpenError
	}
	defer a.Close()
	b, err := openImage(operands[1], fmt2, o)
	if err != nil {
		e.errorf("%v", err)
		return cmpOpenError
	}
	defer b.Close()
	var pr *progress
	if progressOn {
		pr = newProgress(e)
		pr.print(0)
		defer pr.finish()
	}
	return compareImages(e, a, b, strict, pr)
}

func compareImages(e *env, a, b *image, strict bool, pr *progress) int {
	sa, sb := a.dev.Size(), b.dev.Size()
	if strict && sa != sb {
		e.printf("Strict mode: Image size mismatch!\n")
		return cmpDiffer
	}
	common := min(sa, sb)
	total := max(sa, sb, 1)
	buf1, buf2 := alignedBuf(compareBuf), alignedBuf(compareBuf)
	for off := int64(0); off < common; {
		x1, err := blockio.BlockStatus(a.dev, off, common-off)
		if err != nil {
			e.errorf("Sector allocation test failed for %s", a.path)
			return cmpStatusErr
		}
		x2, err := blockio.BlockStatus(b.dev, off, common-off)
		if err != nil {
			e.errorf("Sector allocation test failed for %s", b.path)
			return cmpStatusErr
		}
		n := max(1, min(x1.Length, x2.Length))
		// Like qemu-img, strict mode also compares whether each extent
		// reaches the end of its image (BDRV_BLOCK_EOF).
		if strict && (x1.Data != x2.Data || x1.Zero != x2.Zero || x1.Allocated != x2.Allocated ||
			(x1.End() >= sa) != (x2.End() >= sb)) {
			e.printf("Strict mode: Offset %d block status mismatch!\n", off)
			return cmpDiffer
		}
		z1, z2 := x1.Zero || !x1.Data, x2.Zero || !x2.Data
		if !(z1 && z2) {
			for done := int64(0); done < n; {
				c := min(n-done, compareBuf)
				p := off + done
				if z1 {
					if rc := checkEmpty(e, b, p, c, buf2); rc != cmpSame {
						return rc
					}
				} else if z2 {
					if rc := checkEmpty(e, a, p, c, buf1); rc != cmpSame {
						return rc
					}
				} else {
					if _, err := a.dev.ReadAt(buf1[:c], p); err != nil {
						e.errorf("Error while reading offset %d of %s: %s", p, a.path, describeErr(err))
						return cmpReadError
					}
					if _, err := b.dev.ReadAt(buf2[:c], p); err != nil {
						e.errorf("Error while reading offset %d of %s: %s", p, b.path, describeErr(err))
						return cmpReadError
					}
					if i := firstDiff(buf1[:c], buf2[:c]); i >= 0 {
						e.printf("Content mismatch at offset %d!\n", p+i)
						return cmpDiffer
					}
				}
				done += c
			}
		}
		off += n
		if pr != nil {
			pr.update(float64(off) * 100 / float64(total))
		}
	}
	if sa != sb {
		e.printf("Warning: Image size mismatch!\n")
		big := a
		if sb > sa {
			big = b
		}
		size := big.dev.Size()
		buf := alignedBuf(compareBuf)
		for off := common; off < size; {
			x, err := blockio.BlockStatus(big.dev, off, size-off)
			if err != nil {
				e.errorf("Sector allocation test failed for %s", big.path)
				return cmpStatusErr
			}
			n := max(1, x.Length)
			if x.Data && !x.Zero {
				for done := int64(0); done < n; {
					c := min(n-done, compareBuf)
					if rc := checkEmpty(e, big, off+done, c, buf); rc != cmpSame {
						return rc
					}
					done += c
				}
			}
			off += n
			if pr != nil {
				pr.update(float64(off) * 100 / float64(total))
			}
		}
	}
	e.printf("Images are identical.\n")
	return cmpSame
}

// checkEmpty verifies that [off, off+n) of im reads as zeros.
func checkEmpty(e *env, im *image, off, n int64, buf []byte) int {
	p := buf[:n]
	if _, err := im.dev.ReadAt(p, off); err != nil {
		e.errorf("Error while reading offset %d of %s: %s", off, im.path, describeErr(err))
		return cmpReadError
	}
	for i := int64(0); i < n; i += 512 {
		if !isZero(p[i:min(i+512, n)]) {
			e.printf("Content mismatch at offset %d!\n", off+i)
			return cmpDiffer
		}
	}
	return cmpSame
}

// firstDiff returns the offset of the first differing 512-byte sector of
// a and b (qemu reports mismatches at sector granularity), or -1.
func firstDiff(a, b []byte) int64 {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := 0; i < len(a); i += 512 {
		end := min(i+512, len(a))
		if !bytes.Equal(a[i:end], b[i:end]) {
			return int64(i)
		}
	}
	return -1
}
