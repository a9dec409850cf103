package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// patchSnapshot rewrites fields of the i-th snapshot table entry of a
// qcow2 image in place: date, VM clock, VM state size (the 32-bit field
// and, when the entry has extra data, the 64-bit one) and, when present,
// the instruction count (-2 leaves a field alone).
func patchSnapshot(t *testing.T, path string, i int, dateSec, vmClockNsec, vmState, icount int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	be := binary.BigEndian
	hdr := make([]byte, 72)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		t.Fatal(err)
	}
	if n := int(be.Uint32(hdr[60:])); i >= n {
		t.Fatalf("snapshot %d of %d", i, n)
	}
	pos := int64(be.Uint64(hdr[64:]))
	e := make([]byte, 40)
	for ; ; i-- {
		if _, err := f.ReadAt(e, pos); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			break
		}
		l := 40 + int64(be.Uint32(e[36:])) + int64(be.Uint16(e[12:])) + int64(be.Uint16(e[14:]))
		pos += (l + 7) &^ 7
	}
	extra := make([]byte, be.Uint32(e[36:]))
	if _, err := f.ReadAt(extra, pos+40); err != nil {
		t.Fatal(err)
	}
	if dateSec != -2 {
		be.PutUint32(e[16:], uint32(dateSec))
		be.PutUint32(e[20:], 123456789)
	}
	if vmClockNsec != -2 {
		be.PutUint64(e[24:], uint64(vmClockNsec))
	}
	if vmState != -2 {
		be.PutUint32(e[32:], uint32(vmState))
		if len(extra) >= 8 {
			be.PutUint64(extra, uint64(vmState))
		}
	}
	if icount != -2 && len(extra) >= 24 {
		be.PutUint64(extra[16:], uint64(icount))
	}
	if _, err := f.WriteAt(e, pos); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(extra, pos+40); err != nil {
		t.Fatal(err)
	}
}

// snapshotFixture builds images in dir:
//
//	none.qcow2   no snapshots
//	one.qcow2    one snapshot "s1"
//	many.qcow2   five snapshots: long tags, a 17-character tag, a tag
//	             with spaces, one deleted (ids 1, 3, 4, 5, 6), with
//	             patched dates, VM clocks, VM state sizes and icounts
//	v2.qcow2     compat=0.10 with two snapshots (no extra data)
//	r.img        raw
func snapshotFixture(t *testing.T, dir string) {
	t.Helper()
	p, img, io := fixtureTools(t, dir)
	img("create", "-q", "-f", "qcow2", p("none.qcow2"), "1M")
	img("create", "-q", "-f", "qcow2", p("one.qcow2"), "1M")
	img("snapshot", "-c", "s1", p("one.qcow2"))
	img("create", "-q", "-f", "qcow2", p("many.qcow2"), "4M")
	io(p("many.qcow2"), "qcow2", "write -P 1 0 64k")
	for _, tag := range []string{"first", "gone", "exactly17charsxyz", "a_very_long_snapshot_tag_that_goes_past_every_column",
		"tag with spaces", "last"} {
		img("snapshot", "-c", tag, p("many.qcow2"))
		io(p("many.qcow2"), "qcow2", "write -P 2 1M 4k")
	}
	img("snapshot", "-d", "gone", p("many.qcow2"))
	// 1999-12-31 23:59:59 UTC, 1 h 2 min 3.456 s, 1.5 MiB, icount 42.
	patchSnapshot(t, p("many.qcow2"), 0, 946684799, 3723456000000, 3<<19, 42)
	// 2038-01-19 and later dates, 123 h, 4 GiB + 1 byte needs the
	// 64-bit field, icount -1 (none).
	patchSnapshot(t, p("many.qcow2"), 1, 0xfffffff0, 123*3600e9+999999999, 1<<32+1, -1)
	// Epoch, a clock of 2^64-1 ns, 1023 bytes ("0.999 KiB").
	patchSnapshot(t, p("many.qcow2"), 2, 0, -1, 1023, 0)
	patchSnapshot(t, p("many.qcow2"), 3, 1700000000, 59999999999, 1<<40, 1<<40)
	img("create", "-q", "-f", "qcow2", "-o", "compat=0.10", p("v2.qcow2"), "1M")
	img("snapshot", "-c", "old1", p("v2.qcow2"))
	img("snapshot", "-c", "old2", p("v2.qcow2"))
	patchSnapshot(t, p("v2.qcow2"), 1, 1234567890, 1e9, 7<<20, -2)
	img("create", "-q", "-f", "raw", p("r.img"), "1M")
}

// TestSnapshotListMatchesQemu compares blockimg snapshot with qemu-img
// snapshot: listings and argument errors.
func TestSnapshotListMatchesQemu(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	qemutest.Require(t, "qemu-io")
	dir := t.TempDir()
	snapshotFixture(t, dir)
	cases := []string{
		"-l none.qcow2", "-l one.qcow2", "-l many.qcow2", "-l -U many.qcow2", "-l -q many.qcow2",
		"-l v2.qcow2", "-l r.img", "--force-share -l one.qcow2", "one.qcow2",
		"-l", "-l one.qcow2 many.qcow2", "-l nothere.qcow2", "-l -c x one.qcow2", "-a x -d y one.qcow2",
		"-x one.qcow2", "-f qcow2 -l one.qcow2", "-a", "-U -c x one.qcow2",
	}
	for _, c := range cases {
		args := append([]string{"snapshot"}, strings.Fields(c)...)
		var out, errs, qout, qerrs string
		var rc, qrc int
		inDir(t, dir, func() {
			out, errs, rc = blockimg(t, args...)
			qout, qerrs, qrc = qemuFull(t, "qemu-img", args...)
		})
		sameOutput(t, "snapshot "+c, dir, dir, out, errs, rc, qout, qerrs, qrc)
	}
	// The patched fields show (sanity check of the fixture itself).
	many := mustBlockimg(t, "snapshot", "-l", filepath.Join(dir, "many.qcow2"))
	for _, want := range []string{"1.5 MiB", "01:02:03.456", "4 GiB", "123:00:00.999", "0.999 KiB", "1 TiB",
		"exactly17charsxyz", "tag with spaces", "a_very_long_snapshot_tag_that_goes_past_every_column"} {
		if !strings.Contains(many, want) {
			t.Errorf("many.qcow2 listing lacks %q:\n%s", want, many)
		}
	}
	t.Logf("many.qcow2:\n%s", many)
	// Nothing was changed.
	requireClean(t, "many", filepath.Join(dir, "many.qcow2"))
}

// TestSnapshotUnsupported: -c, -a and -d fail clearly and leave the
// image alone.
func TestSnapshotUnsupported(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	qemutest.Require(t, "qemu-io")
	dir := t.TempDir()
	snapshotFixture(t, dir)
	p := filepath.Join(dir, "one.qcow2")
	before := qemutest.Run(t, "qemu-img", "snapshot", "-l", p)
	for _, a := range []string{"-c", "-a", "-d"} {
		out, errs, rc := blockimg(t, "snapshot", a, "s1", p)
		if rc != 1 || out != "" || !strings.Contains(errs, "internal snapshots is not supported yet") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", a, rc, out, errs)
		}
	}
	if after := qemutest.Run(t, "qemu-img", "snapshot", "-l", p); after != before {
		t.Errorf("image changed:\n%s\n%s", before, after)
	}
}

// TestSnapshotListCorpus compares snapshot -l on every corpus image.
func TestSnapshotListCorpus(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	dir := qemutest.Corpus(t)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".qcow2") && !strings.HasSuffix(name, ".img") &&
			!strings.HasSuffix(name, ".vmdk") && !strings.HasSuffix(name, ".raw") {
			continue
		}
		args := []string{"snapshot", "-l", "-U", name}
		var out, errs, qout, qerrs string
		var rc, qrc int
		inDir(t, dir, func() {
			out, errs, rc = blockimg(t, args...)
			qout, qerrs, qrc = qemuFull(t, "qemu-img", args...)
		})
		if qrc != 0 {
			continue // images qemu-img itself refuses are tested elsewhere
		}
		if strings.Contains(qout, "Snapshot list:") {
			seen++
		}
		sameOutput(t, "snapshot -l "+name, dir, dir, out, errs, rc, qout, qerrs, qrc)
	}
	if seen == 0 {
		t.Errorf("no corpus image with snapshots found in %s", dir)
	}
}
