// Package qemutest runs QEMU's tools (qemu-img, qemu-io, ...) from tests and
// provides the reference image corpus built by shared/corpus/make-corpus.sh.
//
// When a tool is missing, tests skip with a visible message on a
// developer's machine and fail when the CI environment variable is "true",
// so CI can never pass by skipping interop tests.
package qemutest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// InCI reports whether tests run under CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Require returns the path of the named tool, skipping the test when it is
// missing (failing it under CI).
func Require(t testing.TB, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		missing(t, fmt.Sprintf("%s not found in PATH (install qemu-utils)", tool))
	}
	return p
}

func missing(t testing.TB, msg string) {
	t.Helper()
	if InCI() {
		t.Fatalf("qemutest: %s; interop tests cannot be skipped under CI", msg)
	}
	t.Skipf("qemutest: SKIPPING interop test: %s", msg)
}

// Run runs tool with args, failing the test if it exits non-zero, and
// returns its standard output.
func Run(t testing.TB, tool string, args ...string) string {
	t.Helper()
	out, stderr, err := RunErr(t, tool, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", tool, strings.Join(args, " "), err, out, stderr)
	}
	return out
}

// RunErr runs tool with args and returns stdout, stderr and the error
// (an *exec.ExitError for a non-zero exit). Use ExitCode to read the code.
func RunErr(t testing.TB, tool string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	p := Require(t, tool)
	cmd := exec.Command(p, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// ExitCode returns the exit code of an error from RunErr (0 for nil, -1 when
// the process did not exit normally).
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// RepoRoot returns the repository root (the directory holding go.mod).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// SharedDir returns the project's shared folder (../shared beside the
// repository), or "" when it does not exist.
func SharedDir() string {
	if d := os.Getenv("BLOCKLAYER_SHARED"); d != "" {
		return d
	}
	d := filepath.Join(RepoRoot(), "..", "shared")
	if _, err := os.Stat(d); err != nil {
		return ""
	}
	return d
}

var corpusOnce struct {
	sync.Mutex
	dir string
	err error
}

// Corpus returns the directory of the reference corpus. It uses
// $BLOCKLAYER_CORPUS when set, else /tmp/blocklayer-corpus, building it
// with make-corpus.sh when its MANIFEST.tsv is absent (guarded by a file
// lock so parallel test binaries build it once).
func Corpus(t testing.TB) string {
	t.Helper()
	corpusOnce.Lock()
	defer corpusOnce.Unlock()
	if corpusOnce.dir == "" && corpusOnce.err == nil {
		corpusOnce.dir, corpusOnce.err = buildCorpus(t)
	}
	if corpusOnce.err != nil {
		missing(t, corpusOnce.err.Error())
	}
	return corpusOnce.dir
}

func buildCorpus(t testing.TB) (string, error) {
	dir := os.Getenv("BLOCKLAYER_CORPUS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "blocklayer-corpus")
	}
	manifest := filepath.Join(dir, "MANIFEST.tsv")
	done := filepath.Join(dir, ".complete")
	if _, err := os.Stat(done); err == nil {
		return dir, nil
	}
	for _, tool := range []string{"qemu-img", "qemu-io", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("corpus needs %s: %v", tool, err)
		}
	}
	shared := SharedDir()
	if shared == "" {
		return "", fmt.Errorf("shared/ folder not found beside the repository; set BLOCKLAYER_SHARED or BLOCKLAYER_CORPUS")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(done); err == nil {
		return dir, nil
	}
	t.Logf("qemutest: building reference corpus in %s (about 80 s)", dir)
	cmd := exec.Command("bash", filepath.Join(shared, "corpus", "make-corpus.sh"), dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("make-corpus.sh failed: %v\n%s", err, out)
	}
	if _, err := os.Stat(manifest); err != nil {
		return "", fmt.Errorf("make-corpus.sh produced no MANIFEST.tsv: %v", err)
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		return "", err
	}
	return dir, nil
}

// TempImage returns a path for a scratch image in a test temp dir.
func TempImage(t testing.TB, name string) string {
	t.Helper()
	return filepath.Join(t.TempDir(), name)
}
