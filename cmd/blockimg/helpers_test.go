package main

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// blockimg runs the command in-process and returns stdout, stderr and the
// exit code.
func blockimg(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	rc := run(args, &out, &errb)
	return out.String(), errb.String(), rc
}

// mustBlockimg runs the command and fails the test on a non-zero exit.
func mustBlockimg(t testing.TB, args ...string) string {
	t.Helper()
	out, errs, rc := blockimg(t, args...)
	if rc != 0 {
		t.Fatalf("blockimg %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), rc, out, errs)
	}
	return out
}

// qemuRC runs a QEMU tool and returns stdout and its exit code.
func qemuRC(t testing.TB, tool string, args ...string) (string, int) {
	t.Helper()
	out, _, err := qemutest.RunErr(t, tool, args...)
	return out, qemutest.ExitCode(err)
}

// makeRaw creates a raw test image with qemu-img and writes the given
// qemu-io commands into it.
func makeRaw(t testing.TB, dir, name, size string, cmds ...string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	qemutest.Run(t, "qemu-img", "create", "-q", "-f", "raw", p, size)
	if len(cmds) > 0 {
		args := []string{"-f", "raw"}
		for _, c := range cmds {
			args = append(args, "-c", c)
		}
		qemutest.Run(t, "qemu-io", append(args, p)...)
	}
	return p
}

// inDir runs f with the working directory set to dir (corpus JSON holds
// relative file names).
func inDir(t testing.TB, dir string, f func()) {
	t.Helper()
	old, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(old)
	f()
}

// standardFill is the pattern the corpus uses (holes, zeros, data at odd
// offsets, data near the end).
func standardFill(size int64) []string {
	half := size / 2
	last := size - 65536
	return []string{
		"write -P 0x11 0 64k",
		"write -P 0x22 1M 192k",
		"write -P 0x33 4M 1M",
		"write -z 4352k 128k",
		"write -P 0x44 8389120 3072",
		"write -P 0x77 12345 1000",
		"write -P 0x55 " + itoa(half) + " 4M",
		"discard " + itoa(half+2097152) + " 2M",
		"write -P 0x66 " + itoa(last) + " 64k",
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

func newDiscardWriter() *bufio.Writer { return bufio.NewWriter(io.Discard) }

// fixtureTools returns helpers for building test images in dir: p names a
// file there, img runs qemu-img and io runs qemu-io commands on a file.
func fixtureTools(t *testing.T, dir string) (p func(string) string, img func(...string), io func(file, fmtName string, cmds ...string)) {
	p = func(n string) string { return filepath.Join(dir, n) }
	img = func(args ...string) {
		t.Helper()
		qemutest.Run(t, "qemu-img", args...)
	}
	io = func(f, fmtName string, cmds ...string) {
		t.Helper()
		a := []string{"-f", fmtName}
		for _, c := range cmds {
			a = append(a, "-c", c)
		}
		qemutest.Run(t, "qemu-io", append(a, f)...)
	}
	return p, img, io
}
