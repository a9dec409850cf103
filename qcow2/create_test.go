package qcow2

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/internal/qemutest"
)

func TestCreateMatchesQemu(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	cases := []struct {
		name  string
		opts  CreateOptions
		qopts string
	}{
		{"default", CreateOptions{}, ""},
		{"compat010", CreateOptions{Compat: "0.10"}, "compat=0.10"},
		{"c512", CreateOptions{ClusterSize: 512}, "cluster_size=512"},
		{"c2M", CreateOptions{ClusterSize: 2 << 20}, "cluster_size=2M"},
		{"rc1", CreateOptions{RefcountBits: 1}, "refcount_bits=1"},
		{"rc64", CreateOptions{RefcountBits: 64}, "refcount_bits=64"},
		{"lazy", CreateOptions{LazyRefcounts: true}, "lazy_refcounts=on"},
		{"zstd", CreateOptions{CompressionType: "zstd"}, "compression_type=zstd"},
		{"extl2", CreateOptions{ExtendedL2: true, ClusterSize: 128 << 10}, "extended_l2=on,cluster_size=128k"},
		{"meta", CreateOptions{Preallocation: blockio.PreallocMetadata}, "preallocation=metadata"},
		{"falloc", CreateOptions{Preallocation: blockio.PreallocFalloc}, "preallocation=falloc"},
		{"full", CreateOptions{Preallocation: blockio.PreallocFull}, "preallocation=full"},
		{"extl2-meta", CreateOptions{ExtendedL2: true, Preallocation: blockio.PreallocMetadata}, "extended_l2=on,preallocation=metadata"},
		{"datafile", CreateOptions{DataFile: "x.data"}, "data_file=x.data"},
		{"datafile-raw", CreateOptions{DataFile: "x.data", DataFileRaw: true}, "data_file=x.data,data_file_raw=on"},
	}
	size := int64(20 << 20)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir)
			img, err := CreateFile("ours.qcow2", size, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			qemuCheck(t, "ours.qcow2")
			args := []string{"create", "-q", "-f", "qcow2"}
			if c.qopts != "" {
				qo := c.qopts
				if c.opts.DataFile != "" {
					// Give qemu's image its own data file.
					qo = strings.ReplaceAll(qo, "x.data", "q.data")
				}
				args = append(args, "-o", qo)
			}
			qemutest.Run(t, "qemu-img", append(args, "theirs.qcow2", "20M")...)
			info := func(p string) map[string]any {
				var m map[string]any
				if err := json.Unmarshal([]byte(qemutest.Run(t, "qemu-img", "info", "--output=json", p)), &m); err != nil {
					t.Fatal(err)
				}
				fs := m["format-specific"].(map[string]any)["data"].(map[string]any)
				delete(fs, "data-file")
				return map[string]any{"vs": m["virtual-size"], "cs": m["cluster-size"], "fs": fs}
			}
			if a, b := info("ours.qcow2"), info("theirs.qcow2"); !reflect.DeepEqual(a, b) {
				t.Errorf("info differs:\n ours:   %v\n theirs: %v", a, b)
			}
			qemutest.Run(t, "qemu-img", "compare", "ours.qcow2", "theirs.qcow2")
			if c.opts.Preallocation != blockio.PreallocOff {
				// Every cluster allocated like qemu's.
				mo := qemutest.Run(t, "qemu-img", "map", "--output=json", "ours.qcow2")
				var ents []mapEntry
				if err := json.Unmarshal([]byte(mo), &ents); err != nil || len(ents) == 0 {
					t.Fatalf("qemu-img map: %v %q", err, mo)
				}
				for _, e := range ents {
					if !e.Present || !e.Data {
						t.Errorf("preallocated image has unallocated extent %+v", e)
					}
				}
			}
			if c.opts.Preallocation == blockio.PreallocFull {
				st, _ := os.Stat("ours.qcow2")
				if st.Size() < size {
					t.Errorf("file size %d < %d", st.Size(), size)
				}
			}
		})
	}
}
