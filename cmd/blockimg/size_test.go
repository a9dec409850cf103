package main

import (
	"errors"
	"io"
	"strconv"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
)

// Expected values were taken from qemu-img 7.2 (`qemu-img create -f raw F SIZE`).
var sizeCases = []struct {
	in   string
	want int64
	err  error
}{
	{"0", 0, nil},
	{"512", 512, nil},
	{"1.5G", 1610612736, nil},
	{"0x100", 256, nil},
	{"0x1k", 1024, nil},
	{"1.k", 1024, nil},
	{"1e3", 0, errSizeSyntax},
	{"1.5", 0, errSizeSyntax},
	{" 5k", 5120, nil},
	{"+5k", 5120, nil},
	{"18E", 0, errSizeRange},
	{"8E", 0, errSizeRange},
	{"7.99E", 9211842821808707328, nil},
	{"1b", 1, nil},
	{"1B", 1, nil},
	{"1m", 1048576, nil},
	{"1M", 1048576, nil},
	{"2T", 2 << 40, nil},
	{"1P", 1 << 50, nil},
	{"1.5b", 0, errSizeSyntax},
	{"0.5k", 512, nil},
	{"1.0001k", 1024, nil},
	{"", 0, errSizeSyntax},
	{"-1", 0, errSizeSyntax},
	{"k", 0, errSizeSyntax},
	{"1kk", 0, errSizeSyntax},
	{"0x", 0, errSizeSyntax},
	{"0x1.5", 0, errSizeSyntax},
	{"99999999999999999999", 0, errSizeRange},
	{"1.5e", 1729382256910270464, nil},
	{".5k", 0, errSizeSyntax},
}

func TestParseSize(t *testing.T) {
	for _, c := range sizeCases {
		got, err := parseSize(c.in)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("parseSize(%q) = %d, %v; want error %v", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
}

func TestSizeToStr(t *testing.T) {
	for _, c := range []struct {
		v    uint64
		want string
	}{
		{0, "0 B"}, {512, "512 B"}, {1000, "0.977 KiB"}, {10 << 20, "10 MiB"}, {258048, "252 KiB"},
		{3805184, "3.63 MiB"}, {5 << 30, "5 GiB"}, {1 << 62, "4 EiB"},
	} {
		if got := sizeToStr(c.v); got != c.want {
			t.Errorf("sizeToStr(%d) = %q, want %q", c.v, got, c.want)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, c := range sizeCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseSize(s)
		if err != nil {
			if !errors.Is(err, errSizeSyntax) && !errors.Is(err, errSizeRange) {
				t.Fatalf("parseSize(%q): unexpected error %v", s, err)
			}
			return
		}
		if v < 0 {
			t.Fatalf("parseSize(%q) = %d < 0", s, v)
		}
		// The plain decimal form of the value parses back to itself.
		if w, err := parseSize(strconv.FormatInt(v, 10)); err != nil || w != v {
			t.Fatalf("round trip of %d: %d, %v", v, w, err)
		}
	})
}

// FuzzIOCommand runs arbitrary io command lines against an in-memory
// image: no input may panic or change the image size.
func FuzzIOCommand(f *testing.F) {
	for _, s := range []string{
		"read 0 512", "read -P 0x11 0 64k", "read -v 0 40", "write -P 0x22 1k 3k", "write -z 0 1M",
		"write -z -u 4k 4k", "write -c 0 64k", "discard 0 4k", "flush", "length", "read 0 abc",
		"read -P 300 0 1", "write -P 1 -z 0 1", "read -s 1 -l 2 -P 0 0 4", "read 1.5k 512", "read 0 9E",
		"write -s /nonexistent 0 1", "bogus", "read", "read -", "read -- 0 1", "write 0x100 1M",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		const size = 1 << 20
		e := &env{out: newDiscardWriter(), stderr: io.Discard}
		im := &image{path: "mem", fmt: formats["raw"], dev: blockio.NewMem(size)}
		s := &ioSession{e: e, im: im}
		_ = s.exec(line)
		if im.dev.Size() != size {
			t.Fatalf("size changed to %d", im.dev.Size())
		}
	})
}
