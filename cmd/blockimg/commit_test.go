package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// commitFixture builds, in dir:
//
//	base.qcow2   4M  0xaa everywhere
//	mid.qcow2    3M  backing base; 0x02 at 1M..+64k, zeros at 2M..+64k
//	top.qcow2    6M  backing mid; 0x01 at 0..64k, 0x03 at 5M..+4k, zeros at 1M..+4k
//	rawbase.img  2M  0x11 at 0..1M
//	rtop.qcow2   2M  backing rawbase.img (raw); 0x22 at 512k..+64k, zeros at 1M-4k..+8k
//	v2top.qcow2  4M  compat=0.10, backing base; 0x44 at 3M..+128k
//	lone.qcow2   1M  no backing file
//	r.img        1M  raw
func commitFixture(t *testing.T, dir string) {
	t.Helper()
	p, img, io := fixtureTools(t, dir)
	img("create", "-q", "-f", "qcow2", p("base.qcow2"), "4M")
	io(p("base.qcow2"), "qcow2", "write -P 0xaa 0 4M")
	img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", p("mid.qcow2"), "3M")
	io(p("mid.qcow2"), "qcow2", "write -P 2 1M 64k", "write -z 2M 64k")
	img("create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", p("top.qcow2"), "6M")
	io(p("top.qcow2"), "qcow2", "write -P 1 0 64k", "write -P 3 5M 4k", "write -z 1M 4k")
	img("create", "-q", "-f", "raw", p("rawbase.img"), "2M")
	io(p("rawbase.img"), "raw", "write -P 0x11 0 1M")
	img("create", "-q", "-f", "qcow2", "-b", "rawbase.img", "-F", "raw", p("rtop.qcow2"), "2M")
	io(p("rtop.qcow2"), "qcow2", "write -P 0x22 512k 64k", "write -z 1020k 8k")
	img("create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-b", "base.qcow2", "-F", "qcow2", p("v2top.qcow2"), "4M")
	io(p("v2top.qcow2"), "qcow2", "write -P 0x44 3M 128k")
	img("create", "-q", "-f", "qcow2", p("lone.qcow2"), "1M")
	img("create", "-q", "-f", "raw", p("r.img"), "1M")
}

// TestCommitMatchesQemu runs blockimg commit and qemu-img commit on two
// identically built chains and compares exit codes and messages, the
// content of every image (qemu-img compare), qemu-img check of the qcow2
// images, their allocation (qemu-img map) and, for committed images, that
// the top image still reads as before.
func TestCommitMatchesQemu(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	qemutest.Require(t, "qemu-io")
	cases := []struct {
		name, args string
		ok         bool
	}{
		{"into backing", "top.qcow2", true},
		{"drop", "-d top.qcow2", true},
		{"quiet", "-q top.qcow2", true},
		{"into deeper base", "-b base.qcow2 top.qcow2", true},
		{"into named backing", "-b mid.qcow2 top.qcow2", true},
		{"cache and rate", "-t none -r 1M -f qcow2 top.qcow2", true},
		{"raw base", "rtop.qcow2", true},
		{"raw base drop", "-d rtop.qcow2", true},
		{"v2 top", "v2top.qcow2", true},
		{"middle image", "mid.qcow2", true},
		{"no backing", "lone.qcow2", false},
		{"raw image", "-f raw r.img", false},
		{"probed raw image", "r.img", false},
		{"base not in chain", "-b lone.qcow2 top.qcow2", false},
		{"base is top", "-b top.qcow2 top.qcow2", false},
		{"missing base", "-b nothere top.qcow2", false},
		{"bad cache", "-t bogus top.qcow2", false},
		{"bad rate", "-r abc top.qcow2", false},
		{"negative rate", "-r -1 top.qcow2", false},
		{"huge rate", "-r 9E top.qcow2", false},
		{"hex rate", "-r 0x1k lone.qcow2", false}, // deprecation warning first
		{"no file", "", false},
		{"two files", "top.qcow2 mid.qcow2", false},
		{"missing file", "nothere.qcow2", false},
		{"unknown format", "-f bogus top.qcow2", false},
		{"bad option", "-x top.qcow2", false},
	}
	tmpl := t.TempDir()
	commitFixture(t, tmpl)
	offsets := regexp.MustCompile(`, "offset": [0-9]+`)
	// The images each committed image's chain touches.
	chains := map[string][]string{
		"top.qcow2":   {"base.qcow2", "mid.qcow2", "top.qcow2"},
		"mid.qcow2":   {"base.qcow2", "mid.qcow2", "top.qcow2", "v2top.qcow2"},
		"rtop.qcow2":  {"rawbase.img", "rtop.qcow2"},
		"v2top.qcow2": {"base.qcow2", "v2top.qcow2"},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			ours, theirs, orig := t.TempDir(), t.TempDir(), t.TempDir()
			for _, d := range []string{ours, theirs, orig} {
				copyDir(t, tmpl, d)
			}
			args := append([]string{"commit"}, strings.Fields(c.args)...)
			var out, errs, qout, qerrs string
			var rc, qrc int
			inDir(t, ours, func() { out, errs, rc = blockimg(t, args...) })
			inDir(t, theirs, func() { qout, qerrs, qrc = qemuFull(t, "qemu-img", args...) })
			sameOutput(t, "commit "+c.args, ours, theirs, out, errs, rc, qout, qerrs, qrc)
			if (rc == 0) != c.ok {
				t.Errorf("exit %d, want success %v", rc, c.ok)
			}
			if !c.ok {
				return
			}
			fields := strings.Fields(c.args)
			for _, f := range chains[fields[len(fields)-1]] {
				a, b := filepath.Join(ours, f), filepath.Join(theirs, f)
				fmtName := "qcow2"
				if strings.HasSuffix(f, ".img") {
					fmtName = "raw"
				} else {
					requireClean(t, c.name+" "+f, a)
					// Host offsets may differ (cluster allocation order).
					ma := offsets.ReplaceAllString(qemutest.Run(t, "qemu-img", "map", "-U", "--output=json", a), "")
					mb := offsets.ReplaceAllString(qemutest.Run(t, "qemu-img", "map", "-U", "--output=json", b), "")
					if ma != mb {
						t.Errorf("%s: qemu-img map differs\n--- ours\n%s--- qemu-img\n%s", f, ma, mb)
					}
				}
				requireSameContent(t, c.name+" "+f+" vs qemu-img", fmtName, a, b)
				if c.ok && strings.HasSuffix(c.args, f) {
					// The committed image reads the same as before.
					requireSameContent(t, c.name+" "+f+" vs original", fmtName, a, filepath.Join(orig, f))
				}
			}
		})
	}
}

// TestCommitProgress checks -p: qemu-img's progress lines, then the
// final message.
func TestCommitProgress(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	qemutest.Require(t, "qemu-io")
	dir := t.TempDir()
	commitFixture(t, dir)
	out := mustBlockimg(t, "commit", "-p", filepath.Join(dir, "top.qcow2"))
	if !strings.HasPrefix(out, "    (0.00/100%)\r") || !strings.HasSuffix(out, "    (100.00/100%)\r\nImage committed.\n") {
		t.Errorf("progress output %q", out)
	}
	if out := mustBlockimg(t, "commit", "-p", "-q", filepath.Join(dir, "rtop.qcow2")); out != "" {
		t.Errorf("-p -q printed %q", out)
	}
	// No temporary file is left behind.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left over %s", e.Name())
		}
	}
}

// TestCommitSnapshotTop: an image with internal snapshots is emptied in
// place like any other (its clusters are deallocated; those the snapshot
// shares stay referenced by it), as qemu-img does.
func TestCommitSnapshotTop(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	qemutest.Require(t, "qemu-io")
	dir := t.TempDir()
	commitFixture(t, dir)
	top := filepath.Join(dir, "rtop.qcow2")
	qemutest.Run(t, "qemu-img", "snapshot", "-c", "s1", top)
	orig := filepath.Join(t.TempDir(), "orig.qcow2")
	qemutest.Run(t, "qemu-img", "convert", "-O", "raw", top, orig)
	out, errs, rc := blockimg(t, "commit", top)
	if rc != 0 || out != "Image committed.\n" || errs != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", rc, out, errs)
	}
	requireClean(t, "snapshot top", top)
	requireSameContent(t, "base vs original top", "raw", filepath.Join(dir, "rawbase.img"), orig)
	// Emptied in place: it reads as its base, and its snapshot keeps
	// the data it had.
	if o, e, rc := qemuFull(t, "qemu-img", "compare", "-F", "raw", top, orig); rc != 0 {
		t.Errorf("emptied top differs from the committed content: %s%s", o, e)
	}
	if m := qemutest.Run(t, "qemu-img", "map", "--output=json", top); strings.Contains(m, `"depth": 0, "present": true`) {
		t.Errorf("clusters left in the top:\n%s", m)
	}
	qemutest.Run(t, "qemu-img", "snapshot", "-a", "s1", top)
	if o, e, rc := qemuFull(t, "qemu-img", "compare", "-F", "raw", top, orig); rc != 0 {
		t.Errorf("snapshot lost data: %s%s", o, e)
	}
}
