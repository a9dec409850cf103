package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// benchFixture builds, in dir, a 1 MiB raw image (r.img) and a 1 MiB
// qcow2 image (q.qcow2), both filled with 0x11 at 0..512k, so that
// written requests show against old data.
func benchFixture(t *testing.T, dir string) {
	t.Helper()
	p, img, io := fixtureTools(t, dir)
	img("create", "-q", "-f", "raw", p("r.img"), "1M")
	io(p("r.img"), "raw", "write -P 0x11 0 512k")
	img("create", "-q", "-f", "qcow2", p("q.qcow2"), "1M")
	io(p("q.qcow2"), "qcow2", "write -P 0x11 0 512k")
}

var benchTime = regexp.MustCompile(`Run completed in [0-9]+\.[0-9]{3} seconds\.`)

// benchBoth runs "blockimg bench args" and "qemu-img bench args", each in
// its own copy of the fixture directory tmpl, and requires the same exit
// code, stdout (except the run time) and stderr. It returns the two
// directories and qemu-img's exit code.
func benchBoth(t *testing.T, name, tmpl string, args ...string) (ours, theirs string, qrc int) {
	t.Helper()
	ours, theirs = t.TempDir(), t.TempDir()
	copyDir(t, tmpl, ours)
	copyDir(t, tmpl, theirs)
	args = append([]string{"bench"}, args...)
	var out, errs, qout, qerrs string
	var rc int
	inDir(t, ours, func() { out, errs, rc = blockimg(t, args...) })
	inDir(t, theirs, func() { qout, qerrs, qrc = qemuFull(t, "qemu-img", args...) })
	const tm = "Run completed in T seconds."
	out, qout = benchTime.ReplaceAllString(out, tm), benchTime.ReplaceAllString(qout, tm)
	sameOutput(t, name, ours, theirs, out, errs, rc, qout, qerrs, qrc)
	return ours, theirs, qrc
}

// TestBenchMatchesQemu runs blockimg bench and qemu-img bench on
// identical copies and compares exit codes, stdout (except the time),
// stderr and, for write runs, the resulting image content.
func TestBenchMatchesQemu(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	qemutest.Require(t, "qemu-io")
	cases := []string{
		// Reads.
		"-c 50 -f raw r.img",
		"-c 50 q.qcow2",
		"-c 0 -f raw r.img",
		"-c 40 -d 3 -s 1000 -S 7777 -o 5 -f qcow2 q.qcow2",
		"-c 20 -t none -n -f raw r.img",
		"-c 20 -t none -i native q.qcow2",
		"-c 20 -i threads -t writeback -U -f raw r.img",
		"-c 20 -q --no-drain -f raw r.img",
		"-c 3 -s 600k -S 1M -d 1 -f raw r.img",
		// Writes.
		"-w -c 100 -f raw r.img",
		"-w -c 300 -d 5 --pattern=0x5a -s 3000 -S 12345 -o 7 -f raw r.img",
		"-w -c 300 -d 5 --pattern=0x5a -s 3000 -S 12345 -o 7 -f qcow2 q.qcow2",
		"-w -c 200 -d 4 --pattern=7 -s 512 -S 65536 -o 1k --flush-interval=8 -f raw r.img",
		"-w -c 200 -d 4 --pattern=7 -s 4k -S 100k --flush-interval=8 --no-drain q.qcow2",
		"-w -c 90 -d 8 --pattern=0xff -s 64k -S 200k -o 3 -t writethrough q.qcow2", // fails at 1024003
		"-w -c 90 -d 8 --pattern=0xff -s 60k -S 200k -o 3 -t writethrough q.qcow2",
		"-w -c 90 -d 8 --pattern=0x33 -s 4k -S 40k -o 4k -t none -f raw r.img",
		"-w -c 90 -d 8 --pattern=0x33 -s 4k -S 40k -o 4k -t directsync q.qcow2",
		"-w -c 4 -s 1M -f raw r.img",
		// Requests that fail: past the end.
		"-w -c 3 -S 1046000 -f raw r.img",
		"-c 3 -o 2M -f raw r.img",
		"-w -c 3 -s 2M q.qcow2",
		// Argument errors.
		"-c x r.img", "-c -1 r.img", "-c 2147483648 r.img", "-c 0x10 -d 010 -f raw r.img",
		"-d x r.img", "-d 2147483648 r.img",
		"-o x r.img", "-o -1 r.img", "-o 99999999999999999999 r.img", "-c 1 -o 0x10k -f raw r.img",
		"-s x r.img", "-s 2G r.img", "-S x r.img", "-S 3G r.img",
		"-t bogus r.img", "-i bogus r.img",
		"--pattern=256 r.img", "--pattern=x r.img",
		"--flush-interval=x r.img", "--flush-interval=10 r.img", "-w --flush-interval=10 r.img",
		"-n -f raw r.img", "-i native -f raw r.img", "-U -w -f raw r.img",
		"-x r.img", "--bogus r.img", "r.img r.img", "", "-c",
		"-c 1 nothere.img", "-c 1 -f bogus r.img",
	}
	tmpl := t.TempDir()
	benchFixture(t, tmpl)
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c, " ", "_"), func(t *testing.T) {
			ours, theirs, qrc := benchBoth(t, "bench "+c, tmpl, strings.Fields(c)...)
			if qrc != 0 {
				// qemu-img exits at the first failed request, with
				// others still in flight: what they wrote varies.
				return
			}
			for _, f := range []string{"r.img", "q.qcow2"} {
				fmtName := "raw"
				if strings.HasSuffix(f, ".qcow2") {
					fmtName = "qcow2"
					requireClean(t, c, filepath.Join(ours, f))
				}
				requireSameContent(t, c+": "+f, fmtName, filepath.Join(ours, f), filepath.Join(theirs, f))
			}
		})
	}
}

// TestBenchProbedRawWrite: a write run on a raw image opened without -f
// prints qemu's probing warning and still writes (the pattern keeps the
// image raw).
func TestBenchProbedRawWrite(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	qemutest.Require(t, "qemu-io")
	tmpl := t.TempDir()
	benchFixture(t, tmpl)
	ours, theirs, _ := benchBoth(t, "probed raw", tmpl, "-w", "-c", "20", "-d", "2", "r.img")
	requireSameContent(t, "probed raw", "raw", filepath.Join(ours, "r.img"), filepath.Join(theirs, "r.img"))
}

// TestBenchEmptyImage: qemu-img divides by the image size and crashes
// on an empty image; blockimg fails the requests instead, and a run of
// empty requests succeeds.
func TestBenchEmptyImage(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	dir := t.TempDir()
	p := filepath.Join(dir, "z.img")
	qemutest.Run(t, "qemu-img", "create", "-q", "-f", "raw", p, "0")
	out, errs, rc := blockimg(t, "bench", "-c", "3", "-f", "raw", p)
	if rc != 1 || errs != "blockimg: Failed request: Input/output error\n" ||
		out != "Sending 3 read requests, 4096 bytes each, 64 in parallel (starting at offset 0, step size 4096)\n" {
		t.Errorf("exit %d\nstdout %q\nstderr %q", rc, out, errs)
	}
	out = mustBlockimg(t, "bench", "-c", "3", "-s", "0", "-w", "-f", "raw", p)
	if !benchTime.MatchString(out) {
		t.Errorf("stdout %q", out)
	}
	// Depth 0 would wait forever in qemu-img.
	if _, errs, rc := blockimg(t, "bench", "-c", "3", "-d", "0", "-f", "raw", p); rc != 1 || !strings.Contains(errs, "Queue depth 0") {
		t.Errorf("-d 0: exit %d, stderr %q", rc, errs)
	}
}

// TestBenchHugeArgs: a depth and buffer size whose buffers would not fit
// in memory fail cleanly instead of allocating without bound.
func TestBenchHugeArgs(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "r.img")
	mustBlockimg(t, "create", "-q", "-f", "raw", p, "1M")
	for _, args := range [][]string{
		{"-c", "2147483647", "-d", "2147483647", "-s", "0"},
		{"-c", "100000", "-d", "100000", "-s", "1M"},
		{"-c", "2", "-d", "2", "-s", "2147483647"},
	} {
		args = append(append([]string{"bench"}, args...), "-f", "raw", p)
		_, errs, rc := blockimg(t, args...)
		if rc != 1 || !strings.Contains(errs, "Cannot allocate memory") {
			t.Errorf("%v: exit %d, stderr %q", args, rc, errs)
		}
	}
}

func TestParseUlong(t *testing.T) {
	cases := []struct {
		in string
		v  uint64
		ok bool
	}{
		{"0", 0, true}, {"12", 12, true}, {" 12", 12, true}, {"+7", 7, true}, {"0x1f", 31, true},
		{"010", 8, true}, {"-0", 0, true}, {"-1", 1<<64 - 1, true}, {"", 0, false}, {"x", 0, false},
		{"12 ", 0, false}, {"0x", 0, false}, {"08", 0, false}, {"1_0", 0, false}, {"0b1", 0, false},
		{"18446744073709551615", 1<<64 - 1, true}, {"18446744073709551616", 0, false},
	}
	for _, c := range cases {
		v, ok := parseUlong(c.in)
		if ok != c.ok || (ok && v != c.v) {
			t.Errorf("parseUlong(%q) = %d, %v; want %d, %v", c.in, v, ok, c.v, c.ok)
		}
	}
}
