package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"syscall"

	"github.com/blocklayer/blocklayer/blockio"
)

// A format is one image format blockimg can open and create. Formats
// register themselves from their own file (format_raw.go, ...).
type format struct {
	name string
	// probe reports whether hdr (the first bytes of the file, possibly
	// fewer than 4 KiB) looks like this format. raw has no probe.
	probe func(hdr []byte) bool
	// open opens path as this format.
	open func(path string, o openOptions) (blockio.Device, error)
	// create creates an image at path and returns it open read-write.
	create func(path string, p *createParams) (blockio.Device, error)
	// describe returns the option list qemu-img prints after
	// "Formatting 'FILE', fmt=NAME ".
	describe func(p *createParams) string
	// check runs a consistency check, repairing with fix "leaks" or
	// "all", and reports findings line by line to log; nil when the
	// format has none. The report of a repair describes the image after
	// it, with the fixed counts filled in.
	check func(ctx context.Context, dev blockio.Device, path string, fix string, log func(string)) (*checkReport, error)
	// compressed returns the compressed-cluster writer of an opened
	// image (convert -c); nil when the format cannot compress.
	compressed func(dev blockio.Device) (*compressedTarget, error)
	// sequential reports whether the opened image must be written in
	// increasing offset order (streamOptimized vmdk).
	sequential func(dev blockio.Device) bool
	// options documents the -o options create accepts (for -o help).
	options []createOpt
	// zeroInit reports whether a freshly created image reads as zeros
	// without being written (true for every format without a backing
	// file).
	zeroInit bool
}

type openOptions struct {
	readOnly  bool
	noLock    bool // -U / force-share
	noBacking bool
}

// createOpt documents one creation option.
type createOpt struct {
	name, typ, help string
}

// printOptionHelp lists a format's creation options (-o help).
func printOptionHelp(e *env, f *format) {
	e.printf("Supported %s options:\n", f.name)
	for _, o := range f.options {
		e.printf("  %-22s - %s\n", o.name+"=<"+o.typ+">", o.help)
	}
}

// createParams are the parsed inputs of create (and convert's target).
type createParams struct {
	size       int64 // -1 when not given
	opts       *optList
	backing    string
	backingFmt string
	unsafe     bool // -u: do not open the backing file
}

var formats = map[string]*format{}

// probeOrder lists formats with a probe, most specific first.
var probeOrder []string

func registerFormat(f *format) {
	formats[f.name] = f
	if f.probe != nil {
		probeOrder = append(probeOrder, f.name)
		sort.Strings(probeOrder)
	}
}

// knownMagic recognises formats blockimg knows by their magic even when
// this build cannot open them, so such files are never treated as raw.
var knownMagic = []struct {
	name  string
	magic []byte
}{
	{"qcow2", []byte("QFI\xfb")},
	{"vmdk", []byte("KDMV")},
	{"vmdk", []byte("COWD")},
	{"vmdk", []byte("# Disk DescriptorFile")},
	{"vmdk", []byte("# Disk Descriptor File")},
	{"vmdk", []byte("# disk DescriptorFile")},
	{"vmdk", []byte("# Disk descriptorFile")},
	{"vdi", []byte("<<< ")},
	{"qed", []byte("QED\x00")},
	{"luks", []byte("LUKS\xba\xbe")},
}

// probeFormat names the format of hdr: a registered format whose probe
// accepts it, else a known magic, else "raw".
func probeFormat(hdr []byte) string {
	for _, name := range probeOrder {
		if formats[name].probe(hdr) {
			return name
		}
	}
	for _, m := range knownMagic {
		if bytes.HasPrefix(hdr, m.magic) {
			return m.name
		}
	}
	return "raw"
}

func lookupFormat(name string) (*format, error) {
	if f, ok := formats[name]; ok {
		return f, nil
	}
	return nil, fmt.Errorf("Unknown file format '%s'", name)
}

// image is an opened image and how it was opened.
type image struct {
	path   string
	fmt    *format
	probed bool // the format was guessed, not given with -f
	dev    blockio.Device
}

func (im *image) Close() error {
	if im == nil || im.dev == nil {
		return nil
	}
	return im.dev.Close()
}

// openImage opens path with format fmtName ("" to probe). Errors carry
// qemu-img's wording: "Could not open 'PATH': reason".
func openImage(path, fmtName string, o openOptions) (*image, error) {
	probed := fmtName == ""
	if probed {
		hdr, err := readHeader(path)
		if err != nil {
			return nil, openFailed(path, err)
		}
		fmtName = probeFormat(hdr)
	}
	f, ok := formats[fmtName]
	if !ok {
		if probed {
			return nil, fmt.Errorf("Could not open '%s': image format '%s' is not supported by this build", path, fmtName)
		}
		return nil, fmt.Errorf("Could not open '%s': Unknown driver '%s'", path, fmtName)
	}
	if !probed && f.name == "qcow2" {
		// qemu's qcow2 driver names a foreign file plainly.
		if hdr, err := readHeader(path); err == nil && !f.probe(hdr) {
			return nil, fmt.Errorf("Could not open '%s': Image is not in qcow2 format", path)
		}
	}
	dev, err := f.open(path, o)
	if err != nil {
		return nil, openFailed(path, err)
	}
	if probed && f.name == "raw" && !o.readOnly {
		dev = &probedRaw{Device: dev}
	}
	return &image{path: path, fmt: f, probed: probed, dev: dev}, nil
}

// openFailed words an open failure as qemu-img does. When the file
// itself cannot be opened, QEMU reports it twice (the format layer wraps
// the protocol layer's message): "Could not open 'F': Could not open
// 'F': No such file or directory".
func openFailed(path string, err error) error {
	var errno syscall.Errno
	pe, isPath := err.(*os.PathError)
	oe, isOp := err.(*blockio.OpError)
	if ((isPath && pe.Path == path) || (isOp && oe.Op == "open" && oe.Path == path)) && errors.As(err, &errno) {
		return fmt.Errorf("Could not open '%s': Could not open '%s': %s", path, path, capitalize(errno.Error()))
	}
	// A backing file that cannot be opened: "Could not open 'TOP': Could
	// not open backing file: Could not open 'BASE': No such file or
	// directory".
	var boe *blockio.OpError
	if errors.As(err, &boe) && boe.Op == "open" && boe.Path != path && errors.As(err, &errno) &&
		strings.Contains(err.Error(), "opening backing file") {
		return fmt.Errorf("Could not open '%s': Could not open backing file: Could not open '%s': %s", path, boe.Path, capitalize(errno.Error()))
	}
	return fmt.Errorf("Could not open '%s': %s", path, describeErr(err))
}

func readHeader(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, &os.PathError{Op: "open", Path: path, Err: errors.New("Is a directory")}
	}
	hdr := make([]byte, 4096)
	n, err := io.ReadFull(f, hdr)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return nil, err
	}
	return hdr[:n], nil
}

// describeErr renders an error the way qemu words OS errors ("No such
// file or directory"): a bare path or device error is reduced to its errno
// text; wrapped errors keep their context.
func describeErr(err error) string {
	switch e := err.(type) {
	case *os.PathError:
		return capitalize(errText(e.Err))
	case *blockio.OpError:
		return capitalize(errText(e.Err))
	}
	return err.Error()
}

func errText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return describeErr(err)
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// errProbedRawWrite is returned for a write that would change the probed
// format of a raw image.
var errProbedRawWrite = errors.New("Operation not permitted")

// probedRaw guards a raw image whose format was guessed, as QEMU does:
// a write to the first 512 bytes that would make the image probe as
// another format is refused, so a guest cannot turn its raw disk into a
// qcow2 header pointing at host files.
type probedRaw struct {
	blockio.Device
}

const probeSector = 512

func (p *probedRaw) WriteAt(b []byte, off int64) (int, error) {
	if off < probeSector && len(b) > 0 {
		sec := make([]byte, probeSector)
		if _, err := p.Device.ReadAt(sec[:min(probeSector, p.Device.Size())], 0); err != nil {
			return 0, err
		}
		copy(sec[off:], b)
		if probeFormat(sec) != "raw" {
			return 0, &blockio.OpError{Op: "write", Off: off, Err: errProbedRawWrite}
		}
	}
	return p.Device.WriteAt(b, off)
}

func (p *probedRaw) Discard(off, n int64) error { return blockio.Discard(p.Device, off, n) }
func (p *probedRaw) WriteZeroes(off, n int64, mayUnmap bool) error {
	return blockio.WriteZeroes(p.Device, off, n, mayUnmap)
}
func (p *probedRaw) BlockStatus(off, n int64) (blockio.Extent, error) {
	return blockio.BlockStatus(p.Device, off, n)
}
