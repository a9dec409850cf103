//go:build linux

package blockio_test

import (
	"bufio"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// holdWithQemuIO starts qemu-io on path with its stdin kept open, waits
// until it has the image open (it answers a "length" command) and returns
// a function that makes it exit.
func holdWithQemuIO(t *testing.T, args ...string) func() {
	t.Helper()
	bin := qemutest.Require(t, "qemu-io")
	cmd := exec.Command(bin, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stdin.Close()
			io.Copy(io.Discard, stdout)
			cmd.Wait()
		}
	}
	t.Cleanup(stop)
	if _, err := io.WriteString(stdin, "length\n"); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		if !strings.Contains(s, "iB") && !strings.Contains(s, "bytes") {
			stop()
			t.Fatalf("qemu-io %v did not open the image: %q %s", args, s, stderr.String())
		}
	case <-time.After(30 * time.Second):
		stop()
		t.Fatalf("qemu-io %v did not answer", args)
	}
	return stop
}

func newImage(t *testing.T, format string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "img."+format)
	qemutest.Run(t, qemutest.Require(t, "qemu-img"), "create", "-q", "-f", format, path, "1M")
	return path
}

func wantLocked(t *testing.T, err error, path string) {
	t.Helper()
	var le *blockio.LockedError
	if !errors.Is(err, blockio.ErrLocked) || !errors.As(err, &le) || le.Path != path {
		t.Fatalf("got %v, want a *LockedError for %s", err, path)
	}
	if !strings.Contains(err.Error(), path) {
		t.Fatalf("error %q does not name the file", err)
	}
}

// While we hold an image read-write, QEMU's tools see it as locked.
func TestLockBlocksQemu(t *testing.T) {
	img := qemutest.Require(t, "qemu-img")
	qcow := newImage(t, "qcow2")
	f, err := blockio.OpenFile(qcow, blockio.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !f.Locked() {
		t.Fatal("Locked() = false")
	}
	_, stderr, err := qemutest.RunErr(t, img, "info", qcow)
	if err == nil || !strings.Contains(stderr, "lock") {
		t.Fatalf("qemu-img info on an image we hold read-write: err=%v stderr=%q", err, stderr)
	}
	t.Logf("qemu-img info: %s", strings.TrimSpace(stderr))
	qemutest.Run(t, img, "info", "-U", qcow) // -U still works
	_, stderr, err = qemutest.RunErr(t, "qemu-io", "-f", "raw", "-c", "read 0 512", qcow)
	if err == nil || !strings.Contains(stderr, "lock") {
		t.Fatalf("qemu-io read-write on an image we hold: err=%v stderr=%q", err, stderr)
	}
	f.Close()
	qemutest.Run(t, img, "info", qcow)

	// A raw file held read-write rejects QEMU writers.
	raw := newImage(t, "raw")
	f, err = blockio.OpenFile(raw, blockio.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, stderr, err = qemutest.RunErr(t, "qemu-io", "-f", "raw", "-c", "write 0 512", raw)
	if err == nil || !strings.Contains(stderr, `"write" lock`) {
		t.Fatalf("qemu-io write on a raw file we hold: err=%v stderr=%q", err, stderr)
	}
	f.Close()
	qemutest.Run(t, "qemu-io", "-f", "raw", "-c", "write 0 512", raw)

	// Read-only holders share reading with QEMU readers but keep writers out.
	f, err = blockio.OpenFile(qcow, blockio.FileOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	qemutest.Run(t, img, "info", qcow)
	qemutest.Run(t, "qemu-io", "-r", "-c", "read 0 512", qcow)
	if _, stderr, err := qemutest.RunErr(t, "qemu-io", "-c", "write 0 512", qcow); err == nil || !strings.Contains(stderr, "lock") {
		t.Fatalf("qemu-io write on an image we hold read-only: err=%v stderr=%q", err, stderr)
	}
	f.Close()

	// NoLock takes no locks.
	f, err = blockio.OpenFile(qcow, blockio.FileOptions{NoLock: true})
	if err != nil {
		t.Fatal(err)
	}
	if f.Locked() {
		t.Fatal("Locked() with NoLock")
	}
	qemutest.Run(t, img, "info", qcow)
	f.Close()
}

// We refuse images a running QEMU tool holds.
func TestLockRespectsQemu(t *testing.T) {
	raw := newImage(t, "raw")
	stop := holdWithQemuIO(t, "-f", "raw", raw)
	_, err := blockio.OpenFile(raw, blockio.FileOptions{})
	wantLocked(t, err, raw)
	t.Logf("OpenFile: %v", err)
	_, err = blockio.CreateFile(raw, 1<<20, blockio.FileOptions{})
	wantLocked(t, err, raw)
	// Direct mode goes through the same check.
	if _, err = blockio.OpenFile(raw, blockio.FileOptions{Direct: true}); !errors.Is(err, blockio.ErrLocked) && !errors.Is(err, blockio.ErrUnsupported) {
		t.Fatalf("direct open: %v", err)
	}
	f, err := blockio.OpenFile(raw, blockio.FileOptions{NoLock: true})
	if err != nil {
		t.Fatalf("NoLock open: %v", err)
	}
	f.Close()
	stop()
	f, err = blockio.OpenFile(raw, blockio.FileOptions{})
	if err != nil {
		t.Fatalf("open after qemu-io exited: %v", err)
	}
	f.Close()

	// A qcow2 image open in qemu-io: readers are refused too, as
	// qemu-img info would be.
	qcow := newImage(t, "qcow2")
	stop = holdWithQemuIO(t, qcow)
	_, err = blockio.OpenFile(qcow, blockio.FileOptions{})
	wantLocked(t, err, qcow)
	_, err = blockio.OpenFile(qcow, blockio.FileOptions{ReadOnly: true})
	wantLocked(t, err, qcow)
	stop()

	// qemu-io -r shares everything: we may write (as QEMU could).
	stop = holdWithQemuIO(t, "-r", "-f", "raw", raw)
	f, err = blockio.OpenFile(raw, blockio.FileOptions{})
	if err != nil {
		t.Fatalf("open read-write beside qemu-io -r: %v", err)
	}
	f.Close()
	stop()
}

// Two Files in one process conflict like two processes would.
func TestLockWithinProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.raw")
	a, err := blockio.CreateFile(path, 1<<20, blockio.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = blockio.OpenFile(path, blockio.FileOptions{})
	wantLocked(t, err, path)
	_, err = blockio.OpenFile(path, blockio.FileOptions{ReadOnly: true})
	wantLocked(t, err, path)
	a.Close()
	r1, err := blockio.OpenFile(path, blockio.FileOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := blockio.OpenFile(path, blockio.FileOptions{ReadOnly: true})
	if err != nil {
		t.Fatalf("second reader: %v", err)
	}
	_, err = blockio.OpenFile(path, blockio.FileOptions{})
	wantLocked(t, err, path)
	r1.Close()
	r2.Close()
	w, err := blockio.OpenFile(path, blockio.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
}

// After CreateFile the file is locked like an ordinary read-write open:
// QEMU readers that share writing (qemu-io -r on raw) may join.
func TestLockAfterCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.raw")
	f, err := blockio.CreateFile(path, 1<<20, blockio.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	qemutest.Run(t, "qemu-io", "-r", "-f", "raw", "-c", "read 0 512", path)
	if _, stderr, err := qemutest.RunErr(t, "qemu-io", "-f", "raw", "-c", "write 0 512", path); err == nil || !strings.Contains(stderr, "lock") {
		t.Fatalf("qemu-io write on a file we created: err=%v stderr=%q", err, stderr)
	}
}

// ForceShare (qemu-img -U) opens beside a writer.
func TestLockForceShare(t *testing.T) {
	qcow := newImage(t, "qcow2")
	holdWithQemuIO(t, qcow)
	f, err := blockio.OpenFile(qcow, blockio.FileOptions{ReadOnly: true, ForceShare: true})
	if err != nil {
		t.Fatalf("force-share open beside qemu-io: %v", err)
	}
	f.Close()
	if _, err := blockio.OpenFile(qcow, blockio.FileOptions{ForceShare: true}); !errors.Is(err, blockio.ErrInvalid) {
		t.Fatalf("read-write ForceShare = %v, want ErrInvalid", err)
	}
}

// Data written through File (cached and O_DIRECT, unaligned) is what
// qemu-io reads, and the other way round.
func TestFileQemuData(t *testing.T) {
	for _, direct := range []bool{false, true} {
		raw := newImage(t, "raw")
		f, err := blockio.OpenFile(raw, blockio.FileOptions{Direct: direct})
		if err != nil {
			if errors.Is(err, blockio.ErrUnsupported) {
				continue
			}
			t.Fatal(err)
		}
		p := make([]byte, 10000)
		for i := range p {
			p[i] = 0xab
		}
		if _, err := f.WriteAt(p, 1000); err != nil {
			t.Fatal(err)
		}
		if err := f.Flush(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		qemutest.Run(t, "qemu-io", "-f", "raw", "-c", "read -P 0xab 1000 10000", "-c", "read -P 0 0 1000", "-c", "read -P 0 11000 1000", raw)
		qemutest.Run(t, "qemu-io", "-f", "raw", "-c", "write -P 0x5c 3 70000", raw)
		f, err = blockio.OpenFile(raw, blockio.FileOptions{Direct: direct, ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 70002)
		if _, err := f.ReadAt(got, 2); err != nil {
			t.Fatal(err)
		}
		if got[0] != 0 || got[70001] != 0 || strings.Trim(string(got[1:70001]), "\x5c") != "" {
			t.Fatalf("direct=%v: data written by qemu-io reads back wrong", direct)
		}
		f.Close()
	}
}
