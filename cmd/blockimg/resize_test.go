package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// qemuFull runs a QEMU tool and returns stdout, stderr and the exit code.
func qemuFull(t testing.TB, tool string, args ...string) (string, string, int) {
	t.Helper()
	out, errs, err := qemutest.RunErr(t, tool, args...)
	return out, errs, qemutest.ExitCode(err)
}

// sameOutput compares a blockimg run with a qemu-img run made on a copy
// of the same inputs in another directory: exit code, stdout and stderr
// (with the tool names and the directories normalised).
func sameOutput(t *testing.T, what, ourDir, qemuDir string, out, errs string, rc int, qout, qerrs string, qrc int) bool {
	t.Helper()
	norm := func(s, dir string) string {
		s = strings.ReplaceAll(s, dir, "DIR")
		s = strings.ReplaceAll(s, "qemu-img", "blockimg")
		return s
	}
	out, errs = norm(out, ourDir), norm(errs, ourDir)
	qout, qerrs = norm(qout, qemuDir), norm(qerrs, qemuDir)
	if rc != qrc || out != qout || errs != qerrs {
		t.Errorf("%s: exit %d (qemu-img %d)\n--- ours stdout\n%s--- ours stderr\n%s--- qemu-img stdout\n%s--- qemu-img stderr\n%s",
			what, rc, qrc, out, errs, qout, qerrs)
		return false
	}
	return true
}

// qemuInfo returns qemu-img info --output=json of path, decoded.
func qemuInfo(t testing.TB, args ...string) map[string]any {
	t.Helper()
	out := qemutest.Run(t, "qemu-img", append([]string{"info", "-U", "--output=json"}, args...)...)
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("qemu-img info %v: %v\n%s", args, err, out)
	}
	return m
}

// requireClean fails unless qemu-img check reports no errors or leaks.
func requireClean(t testing.TB, what, path string) {
	t.Helper()
	if out, errs, rc := qemuFull(t, "qemu-img", "check", "-U", "-f", "qcow2", path); rc != 0 {
		t.Errorf("%s: qemu-img check %s: exit %d\n%s%s", what, path, rc, out, errs)
	}
}

// requireSameContent fails unless qemu-img compare finds a and b
// identical.
func requireSameContent(t testing.TB, what, fmtName, a, b string) {
	t.Helper()
	if out, errs, rc := qemuFull(t, "qemu-img", "compare", "-U", "-f", fmtName, "-F", fmtName, a, b); rc != 0 {
		t.Errorf("%s: qemu-img compare: exit %d\n%s%s", what, rc, out, errs)
	}
}

type resizeCase struct {
	name  string
	setup func(t *testing.T, dir string) string // returns the image's file name
	args  string                                // resize options and size; the image goes before the size
}

func qcow2Image(opts, size string, cmds ...string) func(t *testing.T, dir string) string {
	return func(t *testing.T, dir string) string {
		p := filepath.Join(dir, "img.qcow2")
		args := []string{"create", "-q", "-f", "qcow2"}
		if opts != "" {
			args = append(args, "-o", opts)
		}
		qemutest.Run(t, "qemu-img", append(args, p, size)...)
		if len(cmds) > 0 {
			a := []string{"-f", "qcow2"}
			for _, c := range cmds {
				a = append(a, "-c", c)
			}
			qemutest.Run(t, "qemu-io", append(a, p)...)
		}
		return "img.qcow2"
	}
}

func rawImage(size string, cmds ...string) func(t *testing.T, dir string) string {
	return func(t *testing.T, dir string) string {
		makeRaw(t, dir, "img.raw", size, cmds...)
		return "img.raw"
	}
}

var resizeFill = []string{"write -P 0x11 0 64k", "write -P 0x22 700k 200k", "write -P 0x33 1984k 64k"}

// TestResizeMatchesQemu runs blockimg resize and qemu-img resize on two
// copies of the same image and compares exit codes, messages and the
// resulting images (virtual size, qemu-img check, qemu-img compare).
func TestResizeMatchesQemu(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	qemutest.Require(t, "qemu-io")
	withSnapshot := func(compat string) func(t *testing.T, dir string) string {
		return func(t *testing.T, dir string) string {
			name := qcow2Image("compat="+compat, "2M", resizeFill...)(t, dir)
			qemutest.Run(t, "qemu-img", "snapshot", "-c", "snap", filepath.Join(dir, name))
			qemutest.Run(t, "qemu-io", "-c", "write -P 0x44 1M 128k", filepath.Join(dir, name))
			return name
		}
	}
	withBacking := func(t *testing.T, dir string) string {
		qemutest.Run(t, "qemu-img", "create", "-q", "-f", "qcow2", filepath.Join(dir, "base.qcow2"), "3M")
		qemutest.Run(t, "qemu-io", "-c", "write -P 0x55 0 3M", filepath.Join(dir, "base.qcow2"))
		p := filepath.Join(dir, "img.qcow2")
		qemutest.Run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", p, "2M")
		qemutest.Run(t, "qemu-io", "-c", "write -P 0x66 64k 64k", p)
		return "img.qcow2"
	}
	vmdkImage := func(t *testing.T, dir string) string {
		qemutest.Run(t, "qemu-img", "create", "-q", "-f", "vmdk", filepath.Join(dir, "img.vmdk"), "2M")
		return "img.vmdk"
	}
	cases := []resizeCase{
		// raw
		{"raw grow", rawImage("2M", resizeFill...), "-f raw 3M"},
		{"raw grow relative", rawImage("2M", resizeFill...), "-f raw +1M"},
		{"raw grow odd", rawImage("2M", resizeFill...), "-f raw +1000"},
		{"raw grow fractional", rawImage("2M", resizeFill...), "-f raw 2.5M"},
		{"raw grow hex suffix", rawImage("2M", resizeFill...), "-f raw 0x3M"},
		{"raw same size", rawImage("2M", resizeFill...), "-f raw 2M"},
		{"raw quiet", rawImage("2M", resizeFill...), "-q -f raw +64k"},
		{"raw probed", rawImage("2M", resizeFill...), "+64k"},
		{"raw probed shrink refused", rawImage("2M", resizeFill...), "-1M"},
		{"raw shrink refused", rawImage("2M", resizeFill...), "-f raw 1M"},
		{"raw shrink relative refused", rawImage("2M", resizeFill...), "-f raw -512k"},
		{"raw shrink", rawImage("2M", resizeFill...), "--shrink -f raw 1M"},
		{"raw shrink relative", rawImage("2M", resizeFill...), "-f raw --shrink -- -1000k"},
		{"raw falloc", rawImage("2M", resizeFill...), "-f raw --preallocation=falloc +1M"},
		{"raw full", rawImage("2M", resizeFill...), "-f raw --preallocation=full +1M"},
		{"raw off", rawImage("2M", resizeFill...), "-f raw --preallocation=off 5M"},
		{"raw metadata refused", rawImage("2M", resizeFill...), "-f raw --preallocation=metadata +1M"},
		{"raw prealloc shrink refused", rawImage("2M", resizeFill...), "-f raw --shrink --preallocation=full -1M"},
		{"raw prealloc same refused", rawImage("2M", resizeFill...), "-f raw --preallocation=falloc +0"},
		{"raw bad prealloc", rawImage("2M"), "-f raw --preallocation=bogus +1M"},
		{"raw zero", rawImage("2M"), "-f raw --shrink 0"},
		{"raw negative", rawImage("2M"), "-f raw --shrink -2M"},
		{"raw 15E", rawImage("2M"), "-f raw 15E"},
		{"raw 16E", rawImage("2M"), "-f raw +16E"},
		{"raw above max", rawImage("2M"), "-f raw 9223372036854775807"},
		{"raw bad size", rawImage("2M"), "-f raw 12abc"},
		{"raw bad relative size", rawImage("2M"), "-f raw +-1M"},
		{"raw exponent", rawImage("2M"), "-f raw 1e3"},
		// qcow2
		{"qcow2 grow", qcow2Image("", "2M", resizeFill...), "3M"},
		{"qcow2 grow big", qcow2Image("", "2M", resizeFill...), "-f qcow2 100T"},
		{"qcow2 grow relative", qcow2Image("", "2M", resizeFill...), "+1536k"},
		{"qcow2 grow odd", qcow2Image("", "2M", resizeFill...), "+1000"},
		{"qcow2 same", qcow2Image("", "2M", resizeFill...), "2M"},
		{"qcow2 shrink refused", qcow2Image("", "2M", resizeFill...), "1M"},
		{"qcow2 shrink", qcow2Image("", "2M", resizeFill...), "--shrink 1M"},
		{"qcow2 shrink odd", qcow2Image("", "2M", resizeFill...), "--shrink 1000k"},
		{"qcow2 shrink unaligned", qcow2Image("", "2M", resizeFill...), "--shrink -1000"},
		{"qcow2 metadata", qcow2Image("", "2M", resizeFill...), "--preallocation=metadata +1M"},
		{"qcow2 falloc", qcow2Image("", "2M", resizeFill...), "--preallocation=falloc 3200k"},
		{"qcow2 full", qcow2Image("", "2M", resizeFill...), "--preallocation=full +1M"},
		{"qcow2 full shrink refused", qcow2Image("", "2M", resizeFill...), "--shrink --preallocation=full 1M"},
		{"qcow2 v2", qcow2Image("compat=0.10", "2M", resizeFill...), "+1M"},
		{"qcow2 v2 shrink", qcow2Image("compat=0.10", "2M", resizeFill...), "--shrink 1M"},
		{"qcow2 extended l2", qcow2Image("extended_l2=on", "2M", resizeFill...), "--shrink 1100k"},
		{"qcow2 too big", qcow2Image("", "2M"), "4P"},
		{"qcow2 v2 snapshot refused", withSnapshot("0.10"), "+1M"},
		{"qcow2 v3 snapshot grow", withSnapshot("1.1"), "+1M"},
		{"qcow2 v3 snapshot shrink", withSnapshot("1.1"), "--shrink 1M"},
		{"qcow2 backing grow", withBacking, "4M"},
		{"qcow2 backing shrink", withBacking, "--shrink 1M"},
		{"qcow2 as raw", qcow2Image("", "2M"), "-f raw +512"},
		// other formats and usage errors
		{"vmdk refused", vmdkImage, "+1M"},
		{"vmdk shrink refused", vmdkImage, "--shrink 1M"},
		{"wrong format", rawImage("2M"), "-f qcow2 +1M"},
		{"unknown format", rawImage("2M"), "-f bogus +1M"},
		{"missing file", func(t *testing.T, dir string) string { return "missing.qcow2" }, "+1M"},
		{"extra argument", rawImage("2M"), "-f raw 1M 2M"},
		{"unknown option", rawImage("2M"), "--bogus 1M"},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			ours, theirs := t.TempDir(), t.TempDir()
			name := c.setup(t, ours)
			c.setup(t, theirs)
			fields := strings.Fields(c.args)
			build := func(dir string) []string {
				args := append([]string{"resize"}, fields[:len(fields)-1]...)
				return append(args, filepath.Join(dir, name), fields[len(fields)-1])
			}
			out, errs, rc := blockimg(t, build(ours)...)
			qout, qerrs, qrc := qemuFull(t, "qemu-img", build(theirs)...)
			if !sameOutput(t, "resize "+c.args, ours, theirs, out, errs, rc, qout, qerrs, qrc) || rc != 0 {
				return
			}
			a, b := filepath.Join(ours, name), filepath.Join(theirs, name)
			fmtName := "raw"
			if strings.HasSuffix(name, ".qcow2") && !strings.Contains(c.args, "-f raw") {
				fmtName = "qcow2"
				requireClean(t, c.name, a)
			}
			ia, ib := qemuInfo(t, "-f", fmtName, a), qemuInfo(t, "-f", fmtName, b)
			if ia["virtual-size"] != ib["virtual-size"] {
				t.Errorf("virtual-size %v, qemu-img made %v", ia["virtual-size"], ib["virtual-size"])
			}
			requireSameContent(t, c.name, fmtName, a, b)
			if strings.Contains(c.args, "preallocation=") && !strings.Contains(c.args, "=off") {
				if fmtName == "raw" {
					// The new area is really allocated: as much as qemu-img's.
					sa, _ := allocatedSize(a)
					sb, _ := allocatedSize(b)
					if sa < sb {
						t.Errorf("allocated %d bytes, qemu-img %d", sa, sb)
					}
				} else {
					// Every cluster the grow added is mapped, as in qemu-img's.
					requireSameMapped(t, a, b)
				}
			}
		})
	}
}

// TestResizeUsage checks resize's and rebase's argument errors that do
// not involve an image.
func TestResizeUsage(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	dir := t.TempDir()
	for _, args := range [][]string{
		{"resize"},
		{"resize", "x"},
		{"resize", "-f"},
		{"resize", "-x", "f", "1M"},
		{"resize", "-qx", "f", "1M"},
		{"resize", "--shrink=on", "f", "1M"},
		{"resize", "--preallocation=bogus", "f", "1M"},
		{"rebase"},
		{"rebase", "-b"},
		{"rebase", "f"},
		{"rebase", "-u", "f", "g"},
	} {
		out, errs, rc := blockimg(t, args...)
		qout, qerrs, qrc := qemuFull(t, "qemu-img", args...)
		sameOutput(t, strings.Join(args, " "), dir, dir, out, errs, rc, qout, qerrs, qrc)
	}
}

// TestResizeKeepsData checks in-process that growing keeps the data and
// reads the new area as zeros, and that a refused resize leaves the file
// alone.
func TestResizeKeepsData(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.raw")
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i*7 + 1)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errs, rc := blockimg(t, "resize", "-f", "raw", p, "512k"); rc != 1 || !strings.Contains(errs, "--shrink") {
		t.Fatalf("shrink without --shrink: exit %d, %q", rc, errs)
	}
	if out := mustBlockimg(t, "resize", "-f", "raw", "--preallocation=full", p, "+1M"); out != "Image resized.\n" {
		t.Fatalf("stdout %q", out)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2<<20 || string(got[:1<<20]) != string(data) || !isZero(got[1<<20:]) {
		t.Fatalf("resized file: len %d, data kept %v", len(got), string(got[:1<<20]) == string(data))
	}
}

// requireSameMapped fails unless a and b (qcow2) have the same guest
// ranges allocated in the image itself (qemu-img map's "present" at depth
// 0), whatever the host offsets.
func requireSameMapped(t testing.TB, a, b string) {
	t.Helper()
	mapped := func(p string) []byte {
		out := qemutest.Run(t, "qemu-img", "map", "-U", "--output=json", "-f", "qcow2", p)
		var ext []struct {
			Start, Length int64
			Depth         int
			Present       bool
		}
		if err := json.Unmarshal([]byte(out), &ext); err != nil {
			t.Fatalf("qemu-img map %s: %v", p, err)
		}
		var bm []byte
		for _, e := range ext {
			for c := e.Start >> 16; c < (e.Start+e.Length)>>16; c++ {
				for int64(len(bm)) <= c {
					bm = append(bm, 0)
				}
				if e.Present && e.Depth == 0 {
					bm[c] = 1
				}
			}
		}
		return bm
	}
	if ma, mb := mapped(a), mapped(b); string(ma) != string(mb) {
		t.Errorf("allocated 64k clusters differ from qemu-img's:\nours %v\nqemu %v", ma, mb)
	}
}
