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
