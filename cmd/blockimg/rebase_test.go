package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// rebaseFixture builds, in dir, a chain for rebase tests:
//
//	base0.qcow2  4M  0x01 at 3M..4M
//	base1.qcow2  4M  backing base0; 0x11 at 0..1M, 0x12 at 2M..2M+64k, zeros at 3M..3M+64k
//	base2.raw    3M  0x11 at 0..512k, 0x22 at 1M+4k..1M+12k, 0x12 at 2M..2M+64k
//	base3.qcow2  6M  backing base2.raw; 0x33 at 5M..5M+64k
//	copy1.qcow2  4M  same content as base1 (standalone)
//	top.qcow2    5M  backing base1; own 0x44 at 512k+4k..+8k, zero cluster at 2M
//	raw.img      1M  plain raw
func rebaseFixture(t *testing.T, dir string) {
	t.Helper()
	p, img, io := fixtureTools(t, dir)
	img("create", "-q", "-f", "qcow2", p("base0.qcow2"), "4M")
	io(p("base0.qcow2"), "qcow2", "write -P 0x01 3M 1M")
	img("create", "-q", "-f", "qcow2", "-b", "base0.qcow2", "-F", "qcow2", p("base1.qcow2"), "4M")
	io(p("base1.qcow2"), "qcow2", "write -P 0x11 0 1M", "write -P 0x12 2M 64k", "write -z 3M 64k")
	img("create", "-q", "-f", "raw", p("base2.raw"), "3M")
	io(p("base2.raw"), "raw", "write -P 0x11 0 512k", "write -P 0x22 1028k 8k", "write -P 0x12 2M 64k")
	img("create", "-q", "-f", "qcow2", "-b", "base2.raw", "-F", "raw", p("base3.qcow2"), "6M")
	io(p("base3.qcow2"), "qcow2", "write -P 0x33 5M 64k")
	img("convert", "-f", "qcow2", "-O", "qcow2", p("base1.qcow2"), p("copy1.qcow2"))
	img("create", "-q", "-f", "qcow2", "-b", "base1.qcow2", "-F", "qcow2", p("top.qcow2"), "5M")
	io(p("top.qcow2"), "qcow2", "write -P 0x44 516k 4k", "write -z 2M 64k")
	img("create", "-q", "-f", "raw", p("raw.img"), "1M")
}

// TestRebaseMatchesQemu runs blockimg rebase and qemu-img rebase on two
// copies of the same chain and compares exit codes and messages, the
// backing fields of qemu-img info, qemu-img check, and the content (with
// qemu-img compare against qemu-img's result and, for safe rebases,
// against the image before the rebase).
func TestRebaseMatchesQemu(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	qemutest.Require(t, "qemu-io")
	cases := []struct {
		name, args, img string
		keepsContent    bool // a safe rebase: the image reads the same
	}{
		{"unsafe rename", "-u -b copy1.qcow2 -F qcow2", "top.qcow2", false},
		{"unsafe other format", "-u -b base2.raw -F raw", "top.qcow2", false},
		{"unsafe remove", "-u -b ''", "top.qcow2", false},
		{"unsafe no -b removes", "-u", "top.qcow2", false},
		{"unsafe without format", "-u -b copy1.qcow2", "top.qcow2", false},
		{"safe onto raw", "-b base2.raw -F raw", "top.qcow2", true},
		{"safe onto chain", "-b base3.qcow2 -F qcow2", "top.qcow2", true},
		{"safe onto identical", "-b copy1.qcow2 -F qcow2", "top.qcow2", true},
		{"safe onto own base", "-b base0.qcow2 -F qcow2", "top.qcow2", true},
		{"safe flatten", "-b ''", "top.qcow2", true},
		{"safe flatten middle", "-b ''", "base1.qcow2", true},
		{"safe quiet", "-q -b base2.raw -F raw", "top.qcow2", true},
		{"safe without format", "-b base2.raw", "top.qcow2", true},
		{"safe new backing probed", "-f qcow2 -b base3.qcow2 -F qcow2", "top.qcow2", true},
		{"no backing safe rebase", "-b base2.raw -F raw", "copy1.qcow2", true},
		{"missing -b", "", "top.qcow2", false},
		{"missing new backing", "-b nothere.qcow2 -F qcow2", "top.qcow2", false},
		{"bad backing format", "-b base2.raw -F bogus", "top.qcow2", false},
		{"unknown format", "-f bogus -u -b x -F qcow2", "top.qcow2", false},
		{"wrong format", "-f qcow2 -u -b x -F qcow2", "raw.img", false},
		{"missing image", "-u -b base2.raw -F raw", "nothere.qcow2", false},
		{"raw image", "-f raw -b ''", "raw.img", false},
		{"probed raw image", "-u -b base2.raw -F raw", "raw.img", false},
		{"two files", "-u -b x -F raw top.qcow2", "raw.img", false},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			ours, theirs, orig := t.TempDir(), t.TempDir(), t.TempDir()
			rebaseFixture(t, ours)
			for _, d := range []string{theirs, orig} {
				copyDir(t, ours, d)
			}
			var fields []string
			for _, f := range strings.Fields(c.args) {
				if f == "''" {
					f = ""
				}
				fields = append(fields, f)
			}
			build := func(dir string) []string {
				return append(append([]string{"rebase"}, fields...), filepath.Join(dir, c.img))
			}
			out, errs, rc := blockimg(t, build(ours)...)
			qout, qerrs, qrc := qemuFull(t, "qemu-img", build(theirs)...)
			sameOutput(t, "rebase "+c.args, ours, theirs, out, errs, rc, qout, qerrs, qrc)
			a, b := filepath.Join(ours, c.img), filepath.Join(theirs, c.img)
			if _, err := os.Stat(a); err != nil || !strings.HasSuffix(c.img, ".qcow2") {
				return
			}
			requireClean(t, c.name, a)
			ia, ib := qemuInfo(t, "-f", "qcow2", a), qemuInfo(t, "-f", "qcow2", b)
			for _, k := range []string{"virtual-size", "backing-filename", "backing-filename-format"} {
				if ia[k] != ib[k] {
					t.Errorf("info %s: %v, qemu-img made %v", k, ia[k], ib[k])
				}
			}
			requireSameContent(t, c.name+" vs qemu-img", "qcow2", a, b)
			if c.keepsContent {
				requireSameContent(t, c.name+" vs original", "qcow2", a, filepath.Join(orig, c.img))
				// The same clusters were copied into the image.
				requireSameMapped(t, a, b)
			}
		})
	}
}

// TestRebaseProgress checks -p: qemu-img's progress lines on stdout,
// ending at 100%.
func TestRebaseProgress(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	qemutest.Require(t, "qemu-io")
	dir := t.TempDir()
	rebaseFixture(t, dir)
	out := mustBlockimg(t, "rebase", "-p", "-b", "base2.raw", "-F", "raw", filepath.Join(dir, "top.qcow2"))
	if !strings.HasPrefix(out, "    (0.00/100%)\r") || !strings.HasSuffix(out, "    (100.00/100%)\r\n") {
		t.Errorf("progress output %q", out)
	}
	if got := qemuInfo(t, filepath.Join(dir, "top.qcow2"))["backing-filename"]; got != "base2.raw" {
		t.Errorf("backing-filename %v", got)
	}
}

// copyDir copies the regular files of src into dst.
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
