package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/blocklayer/blocklayer/internal/qemutest"
)

var timingLine = regexp.MustCompile(`(?m)^[0-9.]+ (bytes|[KMGTPE]iB), \d+ ops; [0-9:.]+( sec)? \([^)]*\)$`)

// scrubTiming replaces qemu-io's timing lines, which vary run to run.
func scrubTiming(s string) string { return timingLine.ReplaceAllString(s, "TIMING") }

// TestIOMatchesQemuIO runs the same command lists through qemu-io and
// blockimg io on twin images and compares output, exit code and the
// resulting image content.
func TestIOMatchesQemuIO(t *testing.T) {
	qemutest.Require(t, "qemu-io")
	dir := t.TempDir()
	scripts := [][]string{
		{"write -P 0x11 0 64k", "read -P 0x11 0 64k", "read -v 0 40", "read -P 0x11 1k 100"},
		{"write -P 0x22 1M 192k", "read -P 0x23 1M 512", "read -P 0x22 1M 512"},
		{"write -z 4k 8k", "read -P 0 4k 8k", "discard 0 4k", "flush", "read -s 4 -l 8 -P 0 0 16"},
		{"read 0 abc", "read abc 512", "bogus 0", "read", "write -P zz 0 512", "write -z -P 1 0 512"},
		{"read 1.5k 512", "write -P 0x11 1 511", "read -P 300 0 1", "read -P -1 0 512"},
		{"read 0 20M", "write 10M 1", "read -x 0 512", "read 0 1k 3"},
		{"write 0x10000 0x200", "read -v 65530 20", "length"},
		// Pattern bytes parse as strtol does: no Go-only "0b", "0o" or "_" forms.
		{"write -P 1_0 0 512", "write -P 0b1 0 512", "write -P 0o7 0 512", "write -P 0x1_0 0 512",
			"write -P -0 0 512", "write -P +3 512 512", "write -P 010 1k 512", "write -P 256 0 512", "read -v 0 1536"},
	}
	for i, s := range scripts {
		a := makeRaw(t, dir, "a"+itoa(int64(i))+".raw", "10M")
		b := makeRaw(t, dir, "b"+itoa(int64(i))+".raw", "10M")
		qargs := []string{"-f", "raw"}
		bargs := []string{"io", "-f", "raw"}
		for _, c := range s {
			qargs = append(qargs, "-c", c)
			bargs = append(bargs, "-c", c)
		}
		want, wrc := qemuRC(t, "qemu-io", append(qargs, a)...)
		got, errs, rc := blockimg(t, append(bargs, b)...)
		want, got = scrubTiming(want), scrubTiming(got)
		if rc != wrc || got != want {
			t.Errorf("script %d: exit %d (qemu-io %d)\n--- ours\n%s%s--- qemu-io\n%s", i, rc, wrc, got, errs, want)
		}
		if out, rc := qemuRC(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", a, b); rc != 0 {
			t.Errorf("script %d: images differ: %s", i, out)
		}
	}
}

// TestIOProbedRawGuard: a probed raw image refuses a write that would
// make it look like another format, as qemu-io does.
func TestIOProbedRawGuard(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	dir := t.TempDir()
	img := makeRaw(t, dir, "a.raw", "1M")
	q := filepath.Join(dir, "q.qcow2")
	qemutest.Run(t, "qemu-img", "create", "-q", "-f", "qcow2", q, "1M")
	out, errs, rc := blockimg(t, "io", "-c", "write -s "+q+" 0 512", img)
	if rc != 1 || !strings.Contains(out, "write failed: Operation not permitted") || !strings.Contains(errs, "probing guessed raw") {
		t.Fatalf("probed raw accepted a qcow2 header: exit %d\n%s%s", rc, out, errs)
	}
	// Ordinary data and zeros are fine, and -f raw lifts the restriction.
	mustBlockimg(t, "io", "-c", "write -P 0x11 0 512", "-c", "write -z 0 512", img)
	mustBlockimg(t, "io", "-f", "raw", "-c", "write -s "+q+" 0 512", img)
	if got := mustBlockimg(t, "info", "--output=json", img); !strings.Contains(got, `"format": "qcow2"`) {
		t.Fatalf("after an explicit raw write the file should probe as qcow2: %s", got)
	}
}

// TestIOFormatsMatchQemuIO runs the same io script on qcow2 and vmdk twins
// through qemu-io and blockimg, then compares the images and checks ours.
func TestIOFormatsMatchQemuIO(t *testing.T) {
	qemutest.Require(t, "qemu-io")
	dir := t.TempDir()
	script := []string{
		"write -P 0x11 0 64k", "write -P 0x22 100k 3k", "write -z 1M 128k", "write -z -u 2M 64k",
		"discard 0 64k", "read -P 0 0 64k", "read -P 0x22 100k 3k", "flush", "write -P 0x33 8M 1M",
		"read -P 0x33 8M 1M", "read -P 0x34 8M 512",
	}
	for _, c := range []struct{ fmt, opts, extra string }{
		{"qcow2", "", "write -c -P 0x44 4M 128k"},
		{"qcow2", "compat=0.10,cluster_size=4k", "write -c -P 0x44 4M 128k"},
		{"vmdk", "", ""},
		{"vmdk", "subformat=monolithicFlat", ""},
	} {
		name := c.fmt + c.opts
		a := filepath.Join(dir, "a-"+name)
		b := filepath.Join(dir, "b-"+name)
		for _, p := range []string{a, b} {
			args := []string{"create", "-q", "-f", c.fmt}
			if c.opts != "" {
				args = append(args, "-o", c.opts)
			}
			qemutest.Run(t, "qemu-img", append(args, p, "16M")...)
		}
		s := append([]string(nil), script...)
		if c.extra != "" {
			s = append(s, c.extra, "read -P 0x44 4M 128k")
		}
		qargs := []string{"-f", c.fmt}
		bargs := []string{"io", "-f", c.fmt}
		for _, cmd := range s {
			qargs = append(qargs, "-c", cmd)
			bargs = append(bargs, "-c", cmd)
		}
		want, wrc := qemuRC(t, "qemu-io", append(qargs, a)...)
		got, errs, rc := blockimg(t, append(bargs, b)...)
		if rc != wrc || scrubTiming(got) != scrubTiming(want) {
			t.Errorf("%s: exit %d (qemu-io %d)\n--- ours\n%s%s--- qemu-io\n%s", name, rc, wrc, got, errs, want)
		}
		if out, rc := qemuRC(t, "qemu-img", "compare", a, b); rc != 0 {
			t.Errorf("%s: images differ: %s", name, out)
		}
		if out, rc := qemuRC(t, "qemu-img", "check", b); rc != 0 {
			t.Errorf("%s: qemu-img check of our image: exit %d\n%s", name, rc, out)
		}
	}
}
