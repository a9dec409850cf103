package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/blocklayer/blocklayer/blockio"
)

// maxIORequest is the largest single request io accepts (QEMU's
// BDRV_REQUEST_MAX_BYTES).
const maxIORequest = 2147483136

// ioPiece bounds the buffer of one read or write command.
const ioPiece = 16 << 20

type ioCommand struct {
	name    string
	minArgs int
	maxArgs int
	opts    string // getopt spec
	run     func(s *ioSession, opts []parsedOpt, args []string) error
	usage   string
}

var ioCommands []ioCommand

func init() {
	ioCommands = []ioCommand{
		{"read", 2, 2, "abCqvP:s:l:", ioRead, "[-abCqv] [-P pattern [-s off] [-l len]] off len -- reads a number of bytes at a specified offset"},
		{"write", 2, 2, "bcCfnquzP:s:", ioWrite, "[-bcCfnquz] [-P pattern | -s source_file] off len -- writes a number of bytes at a specified offset"},
		{"discard", 2, 2, "Cq", ioDiscard, "[-Cq] off len -- discards a number of bytes at a specified offset"},
		{"flush", 0, 0, "", ioFlush, "-- flush all in-core file state to disk"},
		{"length", 0, 0, "", ioLength, "-- gets the length of the current file"},
	}
}

// ioSession is one open image and the commands run against it.
type ioSession struct {
	e  *env
	im *image
}

// errIOCmd marks a command failure already reported on stdout.
var errIOCmd = errors.New("command failed")

func cmdIO(e *env, args []string) int {
	opts, operands, err := getopt(args, "hf:c:rUnt:T:Ck", []longOpt{
		{name: "help", key: "h"},
		{name: "format", hasArg: true, key: "f"},
		{name: "cmd", hasArg: true, key: "c"},
		{name: "read-only", key: "r"},
		{name: "force-share", key: "U"},
		{name: "image-opts"},
	})
	if err != nil {
		return e.usage("%v", err)
	}
	var fmtName string
	var cmds []string
	o := openOptions{}
	for _, op := range opts {
		switch op.key {
		case "h":
			printHelp(e)
			return 0
		case "f":
			fmtName = op.val
		case "c":
			cmds = append(cmds, op.val)
		case "r":
			o.readOnly = true
		case "U":
			o.noLock = true
		case "--image-opts":
			e.errorf("--image-opts is not supported")
			return 1
		}
	}
	if len(operands) != 1 {
		return e.usage("Expecting one image file name")
	}
	if o.noLock && !o.readOnly {
		e.errorf("force-share=on can only be used with read-only images")
		return 1
	}
	im, err := openImage(operands[0], fmtName, o)
	if err != nil {
		e.errorf("can't open device %s: %v", operands[0], err)
		return 1
	}
	if im.probed && im.fmt.name == "raw" && !o.readOnly {
		fmt.Fprintf(e.stderr, "WARNING: Image format was not specified for '%s' and probing guessed raw.\n"+
			"         Automatically detecting the format is dangerous for raw images, write operations on block 0 will be restricted.\n"+
			"         Specify the 'raw' format explicitly to remove the restrictions.\n", operands[0])
	}
	s := &ioSession{e: e, im: im}
	rc := 0
	for _, c := range cmds {
		if err := s.exec(c); err != nil {
			rc = 1
		}
	}
	e.out.Flush()
	if err := im.dev.Flush(); err != nil && !o.readOnly {
		e.errorf("flush failed: %s", describeErr(err))
		rc = 1
	}
	if err := im.dev.Close(); err != nil {
		e.errorf("close failed: %s", describeErr(err))
		rc = 1
	}
	im.dev = nil
	return rc
}

// exec parses and runs one command line. Messages go to stdout as in
// qemu-io; a non-nil error means the command failed.
func (s *ioSession) exec(line string) error {
	words := strings.Fields(line)
	if len(words) == 0 {
		return nil
	}
	var cmd *ioCommand
	for i := range ioCommands {
		if ioCommands[i].name == words[0] {
			cmd = &ioCommands[i]
		}
	}
	if cmd == nil {
		s.e.errorf("command \"%s\" not found", words[0])
		return errIOCmd
	}
	opts, args, err := getopt(words[1:], cmd.opts, nil)
	if err != nil {
		s.e.errorf("%s: %v", cmd.name, err)
		s.e.printf("%s %s\n", cmd.name, cmd.usage)
		return errIOCmd
	}
	if len(args) < cmd.minArgs || len(args) > cmd.maxArgs {
		if len(args) < cmd.minArgs {
			s.e.errorf("bad argument count %d to %s, expected at least %d arguments", len(args), cmd.name, cmd.minArgs)
		} else {
			s.e.printf("%s %s\n", cmd.name, cmd.usage)
		}
		return errIOCmd
	}
	return cmd.run(s, opts, args)
}

// ioNum parses an offset or length (qemu-io's cvtnum) and prints its
// error message.
func (s *ioSession) ioNum(arg string) (int64, error) {
	v, err := parseSize(arg)
	if err != nil {
		if errors.Is(err, errSizeRange) {
			s.e.printf("Parsing error: argument too large -- %s\n", arg)
		} else {
			s.e.printf("Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- %s\n", arg)
		}
		return 0, errIOCmd
	}
	return v, nil
}

// parsePattern parses a pattern byte like strtol(arg, 0): decimal, 0x hex
// or 0 octal, 0..255.
func (s *ioSession) parsePattern(arg string) (byte, error) {
	v, ok := parseUlong(arg)
	if !ok || v > 255 {
		s.e.printf("%s is not a valid pattern byte\n", arg)
		return 0, errIOCmd
	}
	return byte(v), nil
}

// checkRequest validates a request before any buffer is allocated.
// request parses the OFF and LEN operands of op and checks them against
// the image.
func (s *ioSession) request(op string, args []string) (off, n int64, err error) {
	if off, err = s.ioNum(args[0]); err != nil {
		return 0, 0, err
	}
	if n, err = s.ioNum(args[1]); err != nil {
		return 0, 0, err
	}
	return off, n, s.checkRequest(op, off, n)
}

func (s *ioSession) checkRequest(op string, off, n int64) error {
	if n > maxIORequest {
		s.e.printf("length cannot exceed %d, given %d\n", int64(maxIORequest), n)
		return errIOCmd
	}
	if off < 0 || n < 0 || off > s.im.dev.Size() || n > s.im.dev.Size()-off {
		s.e.printf("%s failed: Input/output error\n", op)
		return errIOCmd
	}
	return nil
}

func (s *ioSession) fail(op string, err error) error {
	msg := describeErr(err)
	switch {
	case errors.Is(err, errProbedRawWrite):
		msg = "Operation not permitted"
	case errors.Is(err, blockio.ErrUnsupported):
		msg = "Operation not supported"
	case errors.Is(err, blockio.ErrReadOnly):
		msg = "Permission denied"
	case errors.Is(err, blockio.ErrOutOfRange):
		msg = "Input/output error"
	case errors.Is(err, blockio.ErrNoSpace):
		msg = "No space left on device"
	case errors.Is(err, blockio.ErrInvalid):
		msg = "Invalid argument"
	}
	s.e.printf("%s failed: %s\n", op, msg)
	return errIOCmd
}

func ioRead(s *ioSession, opts []parsedOpt, args []string) error {
	quiet, verbose, havePattern := false, false, false
	var pattern byte
	var pOff, pLen int64 = 0, -1
	for _, o := range opts {
		switch o.key {
		case "q":
			quiet = true
		case "v":
			verbose = true
		case "P":
			p, err := s.parsePattern(o.val)
			if err != nil {
				return err
			}
			pattern, havePattern = p, true
		case "s":
			v, err := s.ioNum(o.val)
			if err != nil {
				return err
			}
			pOff = v
		case "l":
			v, err := s.ioNum(o.val)
			if err != nil {
				return err
			}
			pLen = v
		case "a", "b":
			s.e.printf("read: option -%s is not supported\n", o.key)
			return errIOCmd
		}
	}
	off, n, err := s.request("read", args)
	if err != nil {
		return err
	}
	if pLen < 0 {
		pLen = n - pOff
	}
	if havePattern && (pOff < 0 || pLen < 0 || pOff > n || pLen > n-pOff) {
		s.e.printf("pattern verification range exceeds end of read data\n")
		return errIOCmd
	}
	// Requests are processed in bounded pieces so that a large read never
	// needs a buffer of its full size.
	buf := make([]byte, min(n, ioPiece))
	var elapsed time.Duration
	mismatch := false
	var dump []byte
	for done := int64(0); done < n || n == 0; {
		c := min(n-done, ioPiece)
		p := buf[:c]
		t0 := time.Now()
		if _, err := s.im.dev.ReadAt(p, off+done); err != nil {
			return s.fail("read", err)
		}
		elapsed += time.Since(t0)
		if havePattern && !mismatch {
			lo, hi := max(pOff, done), min(pOff+pLen, done+c)
			for i := lo; i < hi; i++ {
				if p[i-done] != pattern {
					mismatch = true
					break
				}
			}
		}
		if verbose && !quiet {
			dump = append(dump, p...)
			if len(dump) >= ioPiece {
				dumpBuffer(s.e, dump, off+done+c-int64(len(dump)))
				dump = dump[:0]
			}
		}
		done += c
		if n == 0 {
			break
		}
	}
	var rerr error
	if mismatch {
		s.e.printf("Pattern verification failed at offset %d, %d bytes\n", off+pOff, pLen)
		rerr = errIOCmd
	}
	if quiet {
		return rerr
	}
	if verbose && len(dump) > 0 {
		dumpBuffer(s.e, dump, off+n-int64(len(dump)))
	}
	printReport(s.e, "read", elapsed, off, n, n, 1)
	return rerr
}

func ioWrite(s *ioSession, opts []parsedOpt, args []string) error {
	quiet, zero, compressed, unmap := false, false, false, false
	var pattern byte = 0xcd
	var srcFile string
	sources := 0
	for _, o := range opts {
		switch o.key {
		case "q":
			quiet = true
		case "z":
			zero = true
			sources++
		case "c":
			compressed = true
		case "u":
			unmap = true
		case "P":
			p, err := s.parsePattern(o.val)
			if err != nil {
				return err
			}
			pattern = p
			sources++
		case "s":
			srcFile = o.val
			sources++
		case "b":
			s.e.printf("write: option -b is not supported\n")
			return errIOCmd
		}
	}
	if sources > 1 {
		s.e.printf("Only one of -z, -P, and -s can be specified at the same time\n")
		return errIOCmd
	}
	if zero && compressed {
		s.e.printf("-c and -z cannot be specified at the same time\n")
		return errIOCmd
	}
	if unmap && !zero {
		s.e.printf("-u requires -z to be specified\n")
		return errIOCmd
	}
	off, n, err := s.request("write", args)
	if err != nil {
		return err
	}
	start := time.Now()
	switch {
	case zero:
		if err := blockio.WriteZeroes(s.im.dev, off, n, unmap); err != nil {
			return s.fail("write", err)
		}
	default:
		var src *os.File
		if srcFile != "" {
			if src, err = os.Open(srcFile); err != nil {
				s.e.printf("%s\n", describeErr(err))
				return errIOCmd
			}
			defer src.Close()
		}
		var ct *compressedTarget
		if compressed {
			if s.im.fmt.compressed != nil {
				ct, err = s.im.fmt.compressed(s.im.dev)
			}
			if ct == nil || err != nil {
				return s.fail("write", blockio.ErrUnsupported)
			}
		}
		buf := make([]byte, min(n, ioPiece))
		if src == nil {
			for i := range buf {
				buf[i] = pattern
			}
		}
		for done := int64(0); done < n; {
			c := min(n-done, ioPiece)
			p := buf[:c]
			if src != nil {
				if _, err := src.ReadAt(p, done); err != nil {
					s.e.printf("could not read %d bytes from %s\n", n, srcFile)
					return errIOCmd
				}
			}
			if ct != nil {
				for i := int64(0); i < c; {
					w := min(c-i, ct.clusterSize-(off+done+i)%ct.clusterSize)
					if err := ct.write(p[i:i+w], off+done+i); err != nil {
						return s.fail("write", err)
					}
					i += w
				}
			} else if _, err := s.im.dev.WriteAt(p, off+done); err != nil {
				return s.fail("write", err)
			}
			done += c
		}
	}
	if quiet {
		return nil
	}
	printReport(s.e, "wrote", time.Since(start), off, n, n, 1)
	return nil
}

func ioDiscard(s *ioSession, opts []parsedOpt, args []string) error {
	quiet := false
	for _, o := range opts {
		if o.key == "q" {
			quiet = true
		}
	}
	off, n, err := s.request("discard", args)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := blockio.Discard(s.im.dev, off, n); err != nil {
		return s.fail("discard", err)
	}
	if !quiet {
		printReport(s.e, "discard", time.Since(start), off, n, n, 1)
	}
	return nil
}

func ioFlush(s *ioSession, _ []parsedOpt, _ []string) error {
	if err := s.im.dev.Flush(); err != nil {
		return s.fail("flush", err)
	}
	return nil
}

func ioLength(s *ioSession, _ []parsedOpt, _ []string) error {
	s.e.printf("%s\n", sizeToStr(uint64(s.im.dev.Size())))
	return nil
}

// dumpBuffer prints a hex dump as qemu-io's read -v does.
func dumpBuffer(e *env, buf []byte, off int64) {
	for i := 0; i < len(buf); i += 16 {
		line := buf[i:min(i+16, len(buf))]
		e.printf("%08x:  ", off+int64(i))
		for _, b := range line {
			e.printf("%02x ", b)
		}
		e.printf(" ")
		for _, b := range line {
			if b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' {
				e.printf("%c", b)
			} else {
				e.printf(".")
			}
		}
		e.printf("\n")
	}
}

// printReport prints qemu-io's two result lines.
func printReport(e *env, op string, d time.Duration, off, count, total int64, ops int) {
	secs := max(d.Seconds(), 1e-9)
	e.printf("%s %d/%d bytes at offset %d\n", op, total, count, off)
	e.printf("%s, %d ops; %s (%s/sec and %.4f ops/sec)\n", cvtstr(float64(total)), ops, timestr(d),
		cvtstr(float64(total)/secs), float64(ops)/secs)
}

// cvtstr formats a byte count as qemu-io does ("64 KiB", "91.454 MiB").
func cvtstr(v float64) string {
	units := []struct {
		div    float64
		suffix string
	}{{1 << 60, " EiB"}, {1 << 50, " PiB"}, {1 << 40, " TiB"}, {1 << 30, " GiB"}, {1 << 20, " MiB"}, {1 << 10, " KiB"}}
	suffix := " bytes"
	for _, u := range units {
		if v >= u.div {
			v /= u.div
			suffix = u.suffix
			break
		}
	}
	s := fmt.Sprintf("%.3f", v)
	if i := strings.Index(s, ".000"); i >= 0 {
		s = s[:i]
	}
	return s + suffix
}

// timestr formats an elapsed time as qemu-io does ("00.00 sec",
// "0:00:01.50").
func timestr(d time.Duration) string {
	sec := int64(d / time.Second)
	frac := float64(d%time.Second) / 1e9
	if sec == 0 {
		return fmt.Sprintf("%05.2f sec", frac)
	}
	return fmt.Sprintf("%d:%02d:%05.2f", sec/3600, sec/60%60, float64(sec%60)+frac)
}
