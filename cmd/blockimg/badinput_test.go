package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// TestBadInput: errors exit non-zero with a "blockimg: " message; nothing
// panics (a panic would crash the test binary).
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "a.raw")
	if err := os.WriteFile(raw, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	for _, args := range [][]string{
		{}, {"bogus"}, {"info"}, {"info", missing}, {"info", "--output=xml", raw}, {"info", "-f", "nosuch", raw},
		{"info", "--nosuchopt", raw}, {"info", raw, raw}, {"map", missing}, {"map", "--start-offset=abc", raw},
		{"create"}, {"create", "-f", "raw", filepath.Join(dir, "x"), "-5"}, {"create", "-f", "raw", filepath.Join(dir, "x"), "12Q"},
		{"create", "-f", "nosuch", filepath.Join(dir, "x"), "1M"}, {"create", "-o", ",,,", filepath.Join(dir, "x"), "1M"},
		{"convert", raw}, {"convert", missing, filepath.Join(dir, "y")}, {"convert", "-m", "0", raw, filepath.Join(dir, "y")},
		{"convert", "-m", "17", raw, filepath.Join(dir, "y")}, {"convert", "-c", "-O", "raw", raw, filepath.Join(dir, "y")},
		{"convert", "-S", "100", raw, filepath.Join(dir, "y")}, {"convert", "-O", "nosuch", raw, filepath.Join(dir, "y")},
		{"compare", raw}, {"compare", raw, missing}, {"check", missing}, {"check", "-r", "some", raw},
		{"io", missing}, {"io", "-c", "read 0 2M", raw}, {"io", "-r", "-c", "write 0 1", raw}, {"io", "-f", "raw", "-U", "-c", "write 0 1", raw},
		{"convert", "-O", "raw", raw, dir},
		// An explicit 0 is not "use the default" (qemu-img rejects it).
		{"create", "-q", "-f", "qcow2", "-o", "cluster_size=0", filepath.Join(dir, "z0.qcow2"), "1M"},
		{"create", "-q", "-f", "qcow2", "-o", "refcount_bits=0", filepath.Join(dir, "z1.qcow2"), "1M"},
		{"create", "-q", "-f", "qcow2", "-o", "cluster_size=1E", filepath.Join(dir, "z2.qcow2"), "1M"},
		{"create", "-q", "-f", "qcow2", "-o", "cluster_size=1e30", filepath.Join(dir, "z3.qcow2"), "1M"},
		{"create", "-f", "raw", filepath.Join(dir, "z4"), "1e30"}, {"create", "-f", "raw", filepath.Join(dir, "z5"), ""},
		{"create", "-f", "qcow2", filepath.Join(dir, "z6"), "8E"},
		{"map", "--start-offset=-1", raw}, {"map", "--max-length=1e30", raw}, {"map", "--start-offset=9E", raw},
		{"io", "-f", "raw", "-c", "read 9223372036854775807 1", raw}, {"io", "-f", "raw", "-c", "read 1E 1E", raw},
		{"io", "-f", "raw", "-c", "write -z 18446744073709551615 1", raw}, {"io", "-f", "raw", "-c", "discard 0 9E", raw},
		{"io", "-f", "raw", "-c", "write -P 0x1ff 0 1", raw}, {"io", "-f", "raw", "-c", "read", raw},
	} {
		out, errs, rc := blockimg(t, args...)
		if rc == 0 {
			t.Errorf("%v: exit 0\n%s%s", args, out, errs)
		}
		if errs != "" && !strings.HasPrefix(errs, "blockimg: ") && !strings.HasPrefix(errs, "WARNING: ") {
			t.Errorf("%v: stderr not prefixed: %q", args, errs)
		}
		if errs == "" && out == "" {
			t.Errorf("%v: failed silently", args)
		}
	}
}

// TestTruncatedImages runs every command on truncated and garbled copies
// of corpus images: all must fail cleanly or succeed, never panic.
func TestTruncatedImages(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	corpus := qemutest.Corpus(t)
	dir := t.TempDir()
	names := []string{"qcow2-c64k.qcow2", "chain-top.qcow2", "qcow2-compressed-zlib.qcow2", "vmdk-monolithicSparse.vmdk", "vmdk-streamOptimized.vmdk"}
	if testing.Short() {
		names = []string{"qcow2-c64k.qcow2", "vmdk-monolithicSparse.vmdk"}
	}
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(corpus, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, cut := range []int{0, 3, 4, 72, 100, 511, 512, 4096, 65536, 65536 + 100, len(data) / 2, len(data) - 1} {
			if cut > len(data) {
				continue
			}
			bad := filepath.Join(dir, name+"."+itoa(int64(cut)))
			if err := os.WriteFile(bad, data[:cut], 0o644); err != nil {
				t.Fatal(err)
			}
			runAll(t, bad, dir)
		}
		// Garble header fields.
		for _, off := range []int{4, 8, 20, 24, 32, 36, 40, 48, 56, 64, 72, 96, 100, 512} {
			if off+8 > len(data) {
				continue
			}
			g := append([]byte(nil), data...)
			for i := 0; i < 8; i++ {
				g[off+i] = 0xff
			}
			bad := filepath.Join(dir, name+".g"+itoa(int64(off)))
			if err := os.WriteFile(bad, g, 0o644); err != nil {
				t.Fatal(err)
			}
			runAll(t, bad, dir)
		}
	}
}

func runAll(t *testing.T, img, dir string) {
	t.Helper()
	out := filepath.Join(dir, "out.raw")
	for _, args := range [][]string{
		{"info", "--output=json", img}, {"info", "--backing-chain", img}, {"map", "--output=json", img}, {"map", img},
		{"check", img}, {"compare", img, img}, {"convert", "-O", "raw", img, out}, {"io", "-r", "-c", "read 0 64k", "-c", "read -v 1M 16", img},
	} {
		out, errs, rc := blockimg(t, args...)
		if rc != 0 && errs == "" && out == "" {
			t.Errorf("%v: failed silently", args)
		}
	}
	os.Remove(out)
}

// TestEmptyFile: a 0-byte file is a valid empty raw image for info and map.
func TestEmptyFile(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.raw")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"map", "-f", "raw", empty}, {"map", "--output=json", "-f", "raw", empty}, {"info", "-f", "raw", empty},
		{"io", "-f", "raw", "-c", "read 0 0", empty},
	} {
		mustBlockimg(t, args...)
	}
	for _, args := range [][]string{{"map", "-f", "qcow2", empty}, {"info", "-f", "vmdk", empty}, {"check", "-f", "qcow2", empty}} {
		if _, errs, rc := blockimg(t, args...); rc != 1 || !strings.Contains(errs, empty) {
			t.Errorf("%v: exit %d, want 1 and an error naming the file: %q", args, rc, errs)
		}
	}
}

// TestBackingLoop: a backing-file loop is an error, never a hang.
func TestBackingLoop(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.qcow2"), filepath.Join(dir, "b.qcow2")
	qemutest.Run(t, "qemu-img", "create", "-q", "-f", "qcow2", a, "1M")
	qemutest.Run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", a, "-F", "qcow2", b)
	qemutest.Run(t, "qemu-img", "rebase", "-u", "-f", "qcow2", "-b", b, "-F", "qcow2", a)
	for _, args := range [][]string{
		{"info", "--backing-chain", b}, {"map", b}, {"check", b}, {"convert", "-O", "raw", b, filepath.Join(dir, "o.raw")},
		{"io", "-c", "read 0 1", b},
	} {
		if _, errs, rc := blockimg(t, args...); rc == 0 || !strings.Contains(errs, "loop") {
			t.Errorf("%v: exit %d, stderr %q; want a loop error", args, rc, errs)
		}
	}
}
