package vmdk

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/internal/qemutest"
)

var cidLine = regexp.MustCompile(`(?m)^CID=[0-9a-f]+$`)

// TestCreateMatchesQemu compares every file qemu-img create writes with
// ours, byte for byte except the random CID (streamOptimized differs by
// design: we write VMware's GD-at-end layout).
func TestCreateMatchesQemu(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	cases := []struct {
		qopts string
		size  int64
		opts  CreateOptions
		files []string
	}{
		{"subformat=monolithicSparse", 1 << 30, CreateOptions{}, []string{"d.vmdk"}},
		{"subformat=monolithicFlat", 64 << 20, CreateOptions{Subformat: MonolithicFlat}, []string{"d.vmdk", "d-flat.vmdk"}},
		{"subformat=twoGbMaxExtentSparse", 5 << 30, CreateOptions{Subformat: TwoGbMaxExtentSparse}, []string{"d.vmdk", "d-s001.vmdk", "d-s002.vmdk", "d-s003.vmdk"}},
		{"subformat=twoGbMaxExtentFlat", 3 << 30, CreateOptions{Subformat: TwoGbMaxExtentFlat}, []string{"d.vmdk", "d-f001.vmdk", "d-f002.vmdk"}},
		{"compat6=on", 256 << 20, CreateOptions{Compat6: true}, []string{"d.vmdk"}},
		{"hwversion=6", 256 << 20, CreateOptions{HWVersion: "6"}, []string{"d.vmdk"}},
		{"zeroed_grain=on", 256 << 20, CreateOptions{ZeroedGrain: true}, []string{"d.vmdk"}},
		{"adapter_type=lsilogic,toolsversion=1234", 256 << 20, CreateOptions{AdapterType: "lsilogic", ToolsVersion: "1234"}, []string{"d.vmdk"}},
		{"adapter_type=buslogic", 100 << 20, CreateOptions{AdapterType: "buslogic"}, []string{"d.vmdk"}},
		{"adapter_type=legacyESX", 100 << 20, CreateOptions{AdapterType: "legacyESX"}, []string{"d.vmdk"}},
	}
	for _, c := range cases {
		t.Run(c.qopts, func(t *testing.T) {
			qd, od := t.TempDir(), t.TempDir()
			qemutest.Run(t, "qemu-img", "create", "-q", "-f", "vmdk", "-o", c.qopts, filepath.Join(qd, "d.vmdk"), itoa(c.size))
			img, err := CreateFile(filepath.Join(od, "d.vmdk"), c.size, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			img.Close()
			for _, f := range c.files {
				qs, err := os.Stat(filepath.Join(qd, f))
				if err != nil {
					t.Fatal(err)
				}
				ost, err := os.Stat(filepath.Join(od, f))
				if err != nil {
					t.Fatal(err)
				}
				if qs.Size() != ost.Size() && qs.Size() > 4096 { // text descriptors differ with the CID's length
					t.Errorf("%s size %d, qemu %d", f, ost.Size(), qs.Size())
				}
				if qs.Size() > 64<<20 {
					continue // flat data file: size is all there is
				}
				q, _ := os.ReadFile(filepath.Join(qd, f))
				o, _ := os.ReadFile(filepath.Join(od, f))
				for i, part := range [][2][]byte{splitDesc(q), splitDesc(o)}[0] {
					other := splitDesc(o)[i]
					if i == 1 {
						part = cidLine.ReplaceAll(part, []byte("CID=x"))
						other = cidLine.ReplaceAll(other, []byte("CID=x"))
					}
					if !bytes.Equal(part, other) {
						k := 0
						for k < min(len(part), len(other)) && part[k] == other[k] {
							k++
						}
						t.Errorf("%s part %d differs at byte %d (len %d vs %d)\nqemu: %q\nours: %q", f, i, k, len(part), len(other),
							part[max(0, k-40):min(len(part), k+80)], other[max(0, k-40):min(len(other), k+80)])
					}
				}
			}
		})
	}
}

func itoa(n int64) string { return string(appendInt(nil, n)) }

func appendInt(b []byte, n int64) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

func TestCreateOptionErrors(t *testing.T) {
	dir := t.TempDir()
	for _, o := range []CreateOptions{
		{Compat6: true, HWVersion: "6"},
		{AdapterType: "scsi"},
		{Subformat: "vmfs"},
		{Subformat: MonolithicFlat, BackingFile: "x.vmdk"},
	} {
		_, err := CreateFile(filepath.Join(dir, "e.vmdk"), 1<<20, o)
		if !errors.Is(err, blockio.ErrInvalid) {
			t.Errorf("%+v: got %v, want ErrInvalid", o, err)
		}
	}
}

// splitDesc splits a file into {binary, descriptor text}: for a sparse
// extent the header+metadata with the descriptor area blanked, and the
// embedded text up to its first NUL; for a text descriptor {nil, text}.
func splitDesc(b []byte) [2][]byte {
	if len(b) >= 10752 && string(b[:4]) == "KDMV" {
		bin := append([]byte(nil), b...)
		clear(bin[512:10752])
		return [2][]byte{bin, bytes.TrimRight(b[512:10752], "\x00")}
	}
	return [2][]byte{nil, bytes.TrimRight(b, "\x00")}
}
