package qcow2

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/internal/qemutest"
)

func TestBackingLoopAndPolicy(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	dir := t.TempDir()
	t.Chdir(dir)
	for _, n := range []string{"b.qcow2", "a.qcow2"} {
		args := []string{"create", "-q", "-f", "qcow2"}
		if n == "a.qcow2" {
			args = append(args, "-b", "b.qcow2", "-F", "qcow2")
		}
		qemutest.Run(t, "qemu-img", append(args, n, "1M")...)
	}
	// Close the loop: b -> a.
	qemutest.Run(t, "qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", "b.qcow2")
	_, err := OpenFile("a.qcow2", Options{ReadOnly: true})
	if !errors.Is(err, blockio.ErrInvalid) || !strings.Contains(err.Error(), "loop") {
		t.Errorf("backing loop: %v", err)
	}
	// A long chain is cut at MaxBackingDepth.
	qemutest.Run(t, "qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "", "b.qcow2")
	prev := "b.qcow2"
	for i := 0; i < 5; i++ {
		n := filepath.Join(dir, "c"+string(rune('0'+i))+".qcow2")
		qemutest.Run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", prev, "-F", "qcow2", n)
		prev = filepath.Base(n)
	}
	if _, err := OpenFile(prev, Options{ReadOnly: true, MaxBackingDepth: 3}); !errors.Is(err, blockio.ErrInvalid) {
		t.Errorf("deep chain: %v", err)
	}
	img, err := OpenFile(prev, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("chain of 5 backing files: %v", err)
	}
	info, _ := img.Info()
	depth := 0
	for p := info.BackingImage; p != nil; p = p.BackingImage {
		depth++
	}
	img.Close()
	if depth != 5 {
		t.Errorf("backing-image chain depth %d, want 5", depth)
	}
	// Absolute names refused by policy; directory confinement.
	abs := filepath.Join(dir, "abs.qcow2")
	qemutest.Run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", filepath.Join(dir, "b.qcow2"), "-F", "qcow2", abs)
	if _, err := OpenFile(abs, Options{ReadOnly: true, NoAbsoluteBacking: true}); !errors.Is(err, blockio.ErrInvalid) {
		t.Errorf("absolute backing with NoAbsoluteBacking: %v", err)
	}
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	qemutest.Run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", "../b.qcow2", "-F", "qcow2", filepath.Join(sub, "up.qcow2"))
	if _, err := OpenFile(filepath.Join(sub, "up.qcow2"), Options{ReadOnly: true, BackingDir: sub}); !errors.Is(err, blockio.ErrInvalid) {
		t.Errorf("backing outside BackingDir: %v", err)
	}
	if img, err := OpenFile(filepath.Join(sub, "up.qcow2"), Options{ReadOnly: true, BackingDir: dir}); err != nil {
		t.Errorf("backing inside BackingDir: %v", err)
	} else {
		img.Close()
	}
}

// TestDataFileConfined: the external data file named by an image is
// opened read-write with it, so BackingDir confines it too.
func TestDataFileConfined(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(sub, "img.qcow2")
	img, err := CreateFile(path, 1<<20, CreateOptions{DataFile: filepath.Join(dir, "outside.data")})
	if err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFile(path, Options{BackingDir: sub}); !errors.Is(err, blockio.ErrInvalid) {
		t.Errorf("data file outside BackingDir: %v", err)
	}
	if _, err := OpenFile(path, Options{NoAbsoluteBacking: true}); !errors.Is(err, blockio.ErrInvalid) {
		t.Errorf("absolute data file name with NoAbsoluteBacking: %v", err)
	}
	img, err = OpenFile(path, Options{BackingDir: dir})
	if err != nil {
		t.Fatalf("data file inside BackingDir: %v", err)
	}
	img.Close()
}
