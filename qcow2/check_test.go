package qcow2

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCorpusCheck(t *testing.T) {
	dir, imgs := corpusImages(t)
	for _, e := range imgs {
		t.Run(e.name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(dir, e.name+".check.json"))
			if err != nil {
				t.Fatalf("corpus has no %s.check.json: %v", e.name, err)
			}
			var want CheckResult
			if err := json.Unmarshal(raw, &want); err != nil {
				t.Fatal(err)
			}
			t.Chdir(dir)
			img, err := OpenFile(e.name, Options{ReadOnly: true, NoBacking: true})
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			var log []string
			got, err := img.Check(context.Background(), CheckOptions{Log: func(s string) { log = append(log, s) }})
			if err != nil {
				t.Fatal(err)
			}
			got.Filename = want.Filename
			if got != want {
				t.Errorf("check differs:\n got %+v\nwant %+v\nlog: %s", got, want, strings.Join(log[:min(len(log), 10)], "\n"))
			}
			rc, _ := os.ReadFile(filepath.Join(dir, e.name+".check.rc"))
			if want := strings.TrimSpace(string(rc)); want != "" && want != string(rune('0'+got.ExitCode())) {
				t.Errorf("exit code %d, qemu-img %s", got.ExitCode(), want)
			}
		})
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	out.Close()
}

// TestDirtyImageRepairedOnOpen opens qemu's lazy-refcount image that was
// left dirty read-write: refcounts are rebuilt and the data is intact.
func TestDirtyImageRepairedOnOpen(t *testing.T) {
	dir, _ := corpusImages(t)
	p := filepath.Join(t.TempDir(), "dirty.qcow2")
	copyFile(t, filepath.Join(dir, "qcow2-lazy-dirty.qcow2"), p)
	img, err := OpenFile(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if img.h.incompat&incDirty != 0 {
		t.Error("dirty bit still set after open")
	}
	img = closeCheckReopen(t, img, p)
	want, _ := os.ReadFile(filepath.Join(dir, "qcow2-lazy-dirty.qcow2.sha256"))
	if got := sha256Device(t, img); !strings.HasPrefix(string(want), got) {
		t.Errorf("content changed by repair")
	}
}

// closeCheckReopen closes img, requires `qemu-img check` to find the file
// at p clean and reopens it read-only until the end of the test.
func closeCheckReopen(t *testing.T, img *Image, p string) *Image {
	t.Helper()
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	qemuCheck(t, p)
	img, err := OpenFile(p, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	return img
}
