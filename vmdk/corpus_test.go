package vmdk

import (
	"bytes"
	"compress/bzip2"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/internal/qemutest"
)

func corpusVMDKs(t *testing.T) (string, []string) {
	dir := qemutest.Corpus(t)
	m, err := os.ReadFile(filepath.Join(dir, "MANIFEST.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range strings.Split(string(m), "\n") {
		f := strings.Split(l, "\t")
		if len(f) > 4 && f[1] == "vmdk" && f[3] != "refused" {
			names = append(names, f[0])
		}
	}
	if len(names) < 10 {
		t.Fatalf("only %d vmdk images in the corpus manifest", len(names))
	}
	return dir, names
}

// sha256Device hashes the whole guest content of dev.
func sha256Device(t testing.TB, dev blockio.Device) string {
	t.Helper()
	h := sha256.New()
	buf := make([]byte, 4<<20)
	for off := int64(0); off < dev.Size(); {
		n := min(int64(len(buf)), dev.Size()-off)
		if _, err := dev.ReadAt(buf[:n], off); err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		h.Write(buf[:n])
		off += n
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestCorpusRead(t *testing.T) {
	dir, names := corpusVMDKs(t)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(dir, name+".sha256"))
			if err != nil {
				t.Fatal(err)
			}
			img, err := OpenFile(filepath.Join(dir, name), Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			if strings.HasPrefix(name, "vmdk-") && !strings.Contains(name, "stream") {
				checkFillPattern(t, img) // every qemu-io fill of the corpus
			}
			if img.Size() > 300<<20 && (testing.Short() || raceEnabled) {
				t.Logf("%s: %d bytes, checked against the fill pattern only (-short/-race)", name, img.Size())
				return
			}
			got := sha256Device(t, img)
			if w := strings.Fields(string(want))[0]; got != w {
				t.Errorf("sha256 %s, want %s", got, w)
			}
		})
	}
}

// checkFillPattern compares every data extent with the pattern that
// make-corpus.sh's fill() writes (vmdk ignores its discard).
func checkFillPattern(t *testing.T, img *Image) {
	t.Helper()
	size := img.Size()
	ranges := []struct {
		off, n int64
		c      byte
	}{
		{0, 64 << 10, 0x11}, {1 << 20, 192 << 10, 0x22}, {4 << 20, 1 << 20, 0x33}, {4352 << 10, 128 << 10, 0},
		{8389120, 3072, 0x44}, {12345, 1000, 0x77}, {size / 2, 4 << 20, 0x55}, {size - 65536, 65536, 0x66},
	}
	buf := make([]byte, 1<<20)
	exp := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		e, err := img.BlockStatus(off, size-off)
		if err != nil {
			t.Fatal(err)
		}
		if e.Data {
			for o := off; o < e.End(); o += int64(len(buf)) {
				n := min(int64(len(buf)), e.End()-o)
				if _, err := img.ReadAt(buf[:n], o); err != nil {
					t.Fatal(err)
				}
				clear(exp[:n])
				for _, w := range ranges {
					lo, hi := max(w.off, o), min(w.off+w.n, o+n)
					for i := lo; i < hi; i++ {
						exp[i-o] = w.c
					}
				}
				if !bytes.Equal(buf[:n], exp[:n]) {
					t.Fatalf("data at %d+%d differs from the fill pattern", o, n)
				}
			}
		}
		off = e.End()
	}
}

// qemuMapEntry is one line of qemu-img map --output=json.
type qemuMapEntry struct {
	Start   int64  `json:"start"`
	Length  int64  `json:"length"`
	Depth   int    `json:"depth"`
	Present bool   `json:"present"`
	Zero    bool   `json:"zero"`
	Data    bool   `json:"data"`
	Offset  *int64 `json:"offset,omitempty"`
}

// mapLike produces qemu-img map's merged entries from BlockStatus.
func mapLike(t testing.TB, dev blockio.StatusReporter, size int64) []qemuMapEntry {
	t.Helper()
	var out []qemuMapEntry
	for off := int64(0); off < size; {
		e, err := dev.BlockStatus(off, size-off)
		if err != nil {
			t.Fatalf("block status at %d: %v", off, err)
		}
		if e.Length <= 0 {
			t.Fatalf("block status at %d: empty extent", off)
		}
		m := qemuMapEntry{Start: e.Start, Length: e.Length, Depth: e.Depth, Present: e.Allocated, Zero: e.Zero, Data: e.Data}
		if e.Offset >= 0 && e.Data {
			o := e.Offset
			m.Offset = &o
		}
		if k := len(out) - 1; k >= 0 {
			p := &out[k]
			if p.Depth == m.Depth && p.Present == m.Present && p.Zero == m.Zero && p.Data == m.Data &&
				(p.Offset == nil) == (m.Offset == nil) && (p.Offset == nil || *p.Offset+p.Length == *m.Offset) {
				p.Length += m.Length
				off += e.Length
				continue
			}
		}
		out = append(out, m)
		off += e.Length
	}
	return out
}

func TestCorpusMapAndInfo(t *testing.T) {
	dir, names := corpusVMDKs(t)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			img, err := OpenFile(filepath.Join(dir, name), Options{ReadOnly: true, Filename: name})
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			raw, err := os.ReadFile(filepath.Join(dir, name+".map.json"))
			if err != nil {
				t.Fatal(err)
			}
			var want []qemuMapEntry
			if err := json.Unmarshal(raw, &want); err != nil {
				t.Fatal(err)
			}
			got := mapLike(t, img, img.Size())
			if !reflect.DeepEqual(got, want) {
				gj, _ := json.Marshal(got)
				t.Errorf("map differs:\n got %s\nwant %s", gj, raw)
			}
			compareInfo(t, img, filepath.Join(dir, name+".info.json"))
			res, err := img.Check(context.Background())
			wantLeaks := 0
			if name == "vmdk-zeroed-grain.vmdk" {
				wantLeaks = 2 // qemu-io's write -z over two allocated grains leaves them unreferenced
			}
			if err != nil || res.Corruptions != 0 || res.Leaks != wantLeaks || res.RedundantMismatches != 0 {
				t.Errorf("check: %+v %v", res, err)
			}
		})
	}
}

// compareInfo checks Info against qemu-img info's JSON, ignoring
// actual-size (host file system dependent).
func compareInfo(t *testing.T, img *Image, path string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	compareInfoJSON(t, img, raw)
}

func compareInfoJSON(t *testing.T, img *Image, raw []byte) {
	t.Helper()
	var want map[string]any
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	info, err := img.Info()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(info)
	var got map[string]any
	json.Unmarshal(b, &got)
	delete(want, "actual-size")
	delete(got, "actual-size")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("info differs:\n got %s\nwant %s", b, raw)
	}
}

func bunzip(t testing.TB, name string) string {
	t.Helper()
	shared := qemutest.SharedDir()
	if shared == "" {
		if qemutest.InCI() {
			t.Fatal("shared dir (VMware-written samples) not found")
		}
		t.Skip("shared dir not found")
	}
	f, err := os.Open(filepath.Join(shared, "corpus", "samples", name+".bz2"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := filepath.Join(t.TempDir(), name)
	data, err := io.ReadAll(bzip2.NewReader(f))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVersion3Sample(t *testing.T) {
	p := bunzip(t, "iotest-version3.vmdk")
	img, err := OpenFile(p, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if img.Size() != 17179869184 {
		t.Fatalf("size %d", img.Size())
	}
	buf := make([]byte, 512)
	for i := int64(0); i < 100; i++ {
		off := i*655360 + i*512
		if _, err := img.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
		for _, c := range buf {
			if c != byte(i%10+0x30) {
				t.Fatalf("read %d: got %#x want %#x", i, c, i%10+0x30)
			}
		}
	}
	// qemu-img's checksum of the whole disk (16 GiB, mostly unallocated).
	if os.Getenv("VMDK_LONG_TESTS") != "" {
		if got := sha256Sparse(t, img); got != "0859bb3397bc1d30fa979c80a289ce98bfd6c1141a64594d6f3cc8cd68218faf" {
			t.Errorf("sha256 %s", got)
		}
	}
	img.Close()
	rw, err := OpenFile(p, Options{})
	if err != nil {
		t.Fatalf("read-write open of a compressed v3 image: %v", err)
	}
	defer rw.Close()
	if _, err := rw.WriteAt(buf, 0); !errors.Is(err, blockio.ErrUnsupported) {
		t.Fatalf("write to a compressed image: %v", err)
	}
}

// sha256Sparse hashes dev using BlockStatus to skip zero ranges quickly.
func sha256Sparse(t testing.TB, img *Image) string {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < img.Size(); {
		e, err := img.BlockStatus(off, img.Size()-off)
		if err != nil {
			t.Fatal(err)
		}
		if e.Zero && !e.Data {
			for l := e.Length; l > 0; {
				n := min(l, int64(len(zeroBuf)))
				h.Write(zeroBuf[:n])
				l -= n
			}
		} else {
			for l, o := e.Length, off; l > 0; {
				n := min(l, int64(len(buf)))
				if _, err := img.ReadAt(buf[:n], o); err != nil {
					t.Fatal(err)
				}
				h.Write(buf[:n])
				l -= n
				o += n
			}
		}
		off += e.Length
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestAFL9Refused(t *testing.T) {
	p := bunzip(t, "afl9.vmdk")
	_, err := OpenFile(p, Options{ReadOnly: true})
	if err == nil || !errors.Is(err, blockio.ErrCorrupt) || !strings.Contains(err.Error(), "L1 size too big") {
		t.Fatalf("got %v, want corrupt 'L1 size too big'", err)
	}
}
