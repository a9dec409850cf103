package qcow2

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// pokeImage builds a small image with data and returns its path and the
// positions of its structures.
type layout struct {
	path           string
	cs             int64
	l1, rt, rb, l2 int64
	data0          int64 // host offset of guest cluster 0
	content        []byte
}

func makeLayout(t *testing.T, dir string) layout {
	path := filepath.Join(dir, "x.qcow2")
	cs := int64(4096)
	img, err := CreateFile(path, 1<<20, CreateOptions{ClusterSize: cs})
	if err != nil {
		t.Fatal(err)
	}
	content := make([]byte, 1<<20)
	for i := 0; i < 6; i++ {
		p := bytes.Repeat([]byte{byte(0x10 + i)}, int(cs))
		copy(content[int64(i)*3*cs:], p)
		if _, err := img.WriteAt(p, int64(i)*3*cs); err != nil {
			t.Fatal(err)
		}
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	be := binary.BigEndian
	l := layout{path: path, cs: cs, content: content}
	l.l1 = int64(be.Uint64(b[40:]))
	l.rt = int64(be.Uint64(b[48:]))
	l.rb = int64(be.Uint64(b[l.rt:]) & rtOffsetMask)
	l.l2 = int64(be.Uint64(b[l.l1:]) & l1OffsetMask)
	l.data0 = int64(be.Uint64(b[l.l2:]) & l2OffsetMask)
	return l
}

func poke(t *testing.T, path string, off int64, v []byte) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(v, off); err != nil {
		t.Fatal(err)
	}
}

func u64(v uint64) []byte { b := make([]byte, 8); binary.BigEndian.PutUint64(b, v); return b }
func u16(v uint16) []byte { b := make([]byte, 2); binary.BigEndian.PutUint16(b, v); return b }

func qemuCheckRaw(t *testing.T, path string, args ...string) (CheckResult, int) {
	bin := qemutest.Require(t, "qemu-img")
	cmd := exec.Command(bin, append(append([]string{"check", "--output=json"}, args...), path)...)
	out, _ := cmd.Output()
	var r CheckResult
	json.Unmarshal(out, &r)
	return r, cmd.ProcessState.ExitCode()
}

func TestCorruptionCases(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	cases := []struct {
		name       string
		poke       func(t *testing.T, l layout)
		repairable bool
	}{
		{"leak", func(t *testing.T, l layout) {
			st, _ := os.Stat(l.path)
			os.Truncate(l.path, st.Size()+l.cs)
			c := st.Size() / l.cs
			poke(t, l.path, l.rb+c*2, u16(1))
		}, true},
		{"refcount-too-low", func(t *testing.T, l layout) {
			poke(t, l.path, l.rb+(l.data0/l.cs)*2, u16(0))
		}, true},
		{"refcount-too-high", func(t *testing.T, l layout) {
			poke(t, l.path, l.rb+(l.data0/l.cs)*2, u16(2))
		}, true},
		{"copied-cleared", func(t *testing.T, l layout) {
			poke(t, l.path, l.l2, u64(uint64(l.data0)))
		}, true},
		{"l2-into-refcount-table", func(t *testing.T, l layout) {
			poke(t, l.path, l.l2+8*3, u64(uint64(l.rt)|oflagCopied))
		}, false},
		{"l2-unaligned", func(t *testing.T, l layout) {
			poke(t, l.path, l.l2+8*6, u64(uint64(l.data0+512)|oflagCopied))
		}, false},
		{"l1-unaligned", func(t *testing.T, l layout) {
			poke(t, l.path, l.l1, u64(uint64(l.l2+512)|oflagCopied))
		}, false},
		{"l1-beyond-eof", func(t *testing.T, l layout) {
			poke(t, l.path, l.l1, u64(uint64(1<<30)|oflagCopied))
		}, false},
		{"refblock-lost", func(t *testing.T, l layout) {
			poke(t, l.path, l.rt, u64(0))
		}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			l := makeLayout(t, dir)
			c.poke(t, l)
			want, wantRC := qemuCheckRaw(t, l.path)
			img, err := OpenFile(l.path, Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			got, err := img.Check(context.Background(), CheckOptions{})
			img.Close()
			if err != nil {
				t.Fatal(err)
			}
			if got.ExitCode() != wantRC || got.Corruptions != want.Corruptions || got.Leaks != want.Leaks {
				t.Errorf("ours: rc %d corruptions %d leaks %d; qemu-img: rc %d corruptions %d leaks %d",
					got.ExitCode(), got.Corruptions, got.Leaks, wantRC, want.Corruptions, want.Leaks)
			}
			if !c.repairable {
				// Reads of the damaged entries must fail, not return garbage.
				img, err := OpenFile(l.path, Options{ReadOnly: true})
				if err == nil {
					buf := make([]byte, 1<<20)
					_, err = img.ReadAt(buf, 0)
					img.Close()
				}
				if !errors.Is(err, blockio.ErrCorrupt) {
					t.Errorf("reading damaged image: err = %v, want ErrCorrupt", err)
				}
				return
			}
			// Repair with ours, then qemu-img must find it clean and the data intact.
			img, err = OpenFile(l.path, Options{Repair: true})
			if err != nil {
				t.Fatal(err)
			}
			res, err := img.Check(context.Background(), CheckOptions{Repair: RepairAll})
			if err != nil {
				t.Fatal(err)
			}
			if res.Corruptions != 0 || res.Leaks != 0 {
				t.Errorf("after repair: %+v", res)
			}
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			qemuCheck(t, l.path)
			img, err = OpenFile(l.path, Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			buf := make([]byte, 1<<20)
			if _, err := img.ReadAt(buf, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf, l.content) {
				t.Error("content changed by repair")
			}
		})
	}
}

// TestRepairUnalignedL2 pokes a preallocated zero cluster with an
// unaligned offset and a data cluster pointing past the end of the file
// into an image, repairs one copy with qemu-img check -r all and one with
// Check(RepairAll), and requires the same verdict from qemu-img check on
// both afterwards (QEMU repairs the first, leaves the second) and the same
// content.
func TestRepairUnalignedL2(t *testing.T) {
	qemuImg := qemutest.Require(t, "qemu-img")
	qemuIO := qemutest.Require(t, "qemu-io")
	for _, c := range []struct {
		name    string
		opts    string
		entries map[int]uint64 // L2 index -> poked entry
	}{
		{"zero-unaligned", "cluster_size=4096", map[int]uint64{1: 1<<63 | 0x5200 | 1}},
		{"zero-unaligned-and-outside", "cluster_size=4096", map[int]uint64{1: 1<<63 | 0x5200 | 1, 2: 1<<63 | 1<<30}},
		{"extl2-zero-unaligned", "cluster_size=65536,extended_l2=on", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			a := filepath.Join(dir, "a.qcow2")
			qemutest.Run(t, qemuImg, "create", "-f", "qcow2", "-o", c.opts, a, "1M")
			qemutest.Run(t, qemuIO, "-c", "write -P 1 0 4k", "-c", "write -z 64k 64k", "-c", "write -P 2 128k 4k", a)
			f, err := os.OpenFile(a, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			hdr := make([]byte, 48)
			f.ReadAt(hdr, 0)
			l1 := make([]byte, 8)
			f.ReadAt(l1, int64(binary.BigEndian.Uint64(hdr[40:])))
			l2 := int64(binary.BigEndian.Uint64(l1) & l1OffsetMask)
			entries := c.entries
			if entries == nil {
				// Extended L2: the zero cluster at 64k (index 1) gets a bogus
				// unaligned host offset; its bitmap stays all-zero.
				entries = map[int]uint64{1: 0x5200}
			}
			esz := int64(8)
			if strings.Contains(c.opts, "extended_l2=on") {
				esz = 16
			} else {
				entries = c.entries
			}
			for i, v := range entries {
				f.WriteAt(u64(v), l2+int64(i)*esz)
			}
			f.Close()
			b := filepath.Join(dir, "b.qcow2")
			data, _ := os.ReadFile(a)
			os.WriteFile(b, data, 0o644)

			before, code := qemuCheckRaw(t, a)
			if code != 2 || before.Corruptions == 0 {
				t.Fatalf("poked image: qemu-img check exit %d %+v", code, before)
			}
			img, err := OpenFile(b, Options{})
			if err != nil {
				t.Fatal(err)
			}
			ours, err := img.Check(context.Background(), CheckOptions{})
			if err != nil || ours.Corruptions != before.Corruptions {
				t.Errorf("Check before repair = %+v, %v; qemu-img: %+v", ours, err, before)
			}
			rep, err := img.Check(context.Background(), CheckOptions{Repair: RepairAll})
			if err != nil {
				t.Fatal(err)
			}
			img.Close()
			exec.Command(qemuImg, "check", "-r", "all", a).Run()
			qa, codeA := qemuCheckRaw(t, a)
			qb, codeB := qemuCheckRaw(t, b)
			if codeA != codeB || qa.Corruptions != qb.Corruptions || qa.Leaks != qb.Leaks || qa.CheckErrors != qb.CheckErrors {
				t.Errorf("after qemu's repair: exit %d %+v; after ours (%+v): exit %d %+v", codeA, qa, rep, codeB, qb)
			}
			if rep.Corruptions != qb.Corruptions {
				t.Errorf("our post-repair verdict %+v differs from qemu-img check %+v", rep, qb)
			}
			if out, err := exec.Command(qemuImg, "compare", "-U", a, b).CombinedOutput(); err != nil && !strings.Contains(c.name, "outside") {
				t.Errorf("content differs after repair: %v %s", err, out)
			}
		})
	}
}
