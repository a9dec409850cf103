package vmdk

import (
	"bytes"
	"testing"

	"github.com/klauspost/compress/zlib"
)

func zlibBytes(t *testing.T, p []byte) []byte {
	var b bytes.Buffer
	w := zlib.NewWriter(&b)
	w.Write(p)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestInflateWhole(t *testing.T) {
	grain := halfRandom(9, 64<<10)
	z := zlibBytes(t, grain)
	check := func(name string, src []byte, dstLen int, wantN int, wantErr bool, want []byte) {
		t.Helper()
		dst := make([]byte, dstLen)
		n, err := inflateWhole(dst, src)
		if (err != nil) != wantErr || n != wantN {
			t.Errorf("%s: n=%d err=%v, want n=%d err=%v", name, n, err, wantN, wantErr)
		}
		if want != nil && !bytes.Equal(dst[:n], want[:n]) {
			t.Errorf("%s: data mismatch", name)
		}
	}
	check("exact", z, len(grain), len(grain), false, grain)
	check("short stream", zlibBytes(t, grain[:1000]), len(grain), 1000, false, grain)
	check("overlong stream", z, 4096, 4096, false, grain)
	bad := bytes.Clone(z)
	bad[len(bad)-1] ^= 1
	check("bad checksum", bad, len(grain), len(grain), true, nil)
	badShort := zlibBytes(t, grain[:1000])
	badShort[len(badShort)-2] ^= 1
	check("bad checksum short", badShort, len(grain), 1000, true, nil)
	check("no trailer", z[:len(z)-4], len(grain), len(grain), false, grain)
	check("empty", nil, 10, 0, true, nil)
	check("bad header", []byte{0x78, 0x9d, 0}, 10, 0, true, nil)
	check("garbage", []byte{0x78, 0x9c, 0xff, 0xff, 0xff, 0xff}, 10, 0, true, nil)
	// Same results as the zlib-reader path on a truncated stream.
	tr := z[:len(z)/2]
	dst1 := make([]byte, len(grain))
	dst2 := make([]byte, len(grain))
	n1, err1 := inflateWhole(dst1, tr)
	n2, err2 := inflateAt(dst2, tr, 1)
	if err1 != nil || err2 != nil || n1 == 0 || !bytes.Equal(dst1[1:n1], dst2[:n1-1]) {
		t.Errorf("truncated: n1=%d err1=%v n2=%d err2=%v", n1, err1, n2, err2)
	}
}

// FuzzInflateWhole checks inflateWhole never panics and inflates the same
// bytes as the zlib-reader path (inflateAt with a skip).
func FuzzInflateWhole(f *testing.F) {
	g := halfRandom(5, 8<<10)
	var b bytes.Buffer
	w := zlib.NewWriter(&b)
	w.Write(g)
	w.Close()
	f.Add(b.Bytes())
	f.Add(b.Bytes()[:b.Len()/2])
	f.Add([]byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	f.Fuzz(func(t *testing.T, src []byte) {
		dst := make([]byte, 8<<10)
		n, err := inflateWhole(dst, src)
		if n < 0 || n > len(dst) {
			t.Fatalf("n=%d", n)
		}
		ref := make([]byte, len(dst)-1)
		m, rerr := inflateAt(ref, src, 1)
		if err == nil && rerr == nil && n > 1 && !bytes.Equal(dst[1:min(n, m+1)], ref[:min(n, m+1)-1]) {
			t.Fatalf("output differs from the zlib reader")
		}
	})
}
