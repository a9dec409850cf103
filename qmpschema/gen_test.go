package qmpschema

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/blocklayer/blocklayer/internal/qapigen/qapi"
	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// TestGeneratedUpToDate fails when the *_gen.go files are not what the
// generator makes of schema/ today (run `go generate ./qmpschema`).
func TestGeneratedUpToDate(t *testing.T) {
	s, err := qapi.Load("schema/block-core.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	files, err := qapi.Generate(s, "qmpschema")
	if err != nil {
		t.Fatal(err)
	}
	onDisk, _ := filepath.Glob("*_gen.go")
	sort.Strings(onDisk)
	if len(onDisk) != len(files) {
		t.Errorf("generated files on disk %v, generator writes %d files", onDisk, len(files))
	}
	for name, want := range files {
		got, err := os.ReadFile(name)
		if err != nil {
			t.Errorf("%s: %v (run go generate ./qmpschema)", name, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run go generate ./qmpschema\n%s", name, firstDiff(string(got), string(want)))
		}
		if !bytes.HasPrefix(got, []byte(qapi.Header+"\n")) {
			t.Errorf("%s lacks the generated-code header", name)
		}
	}
}

// TestGoGenerateCommand runs the go:generate command line into a temporary
// directory and compares the result with the checked-in files.
func TestGoGenerateCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the generator")
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	const directive = "//go:generate go run ../internal/qapigen -pkg qmpschema -o . schema/block-core.json"
	if !strings.Contains(string(doc), directive) {
		t.Fatalf("doc.go lacks %q", directive)
	}
	tmp := t.TempDir()
	cmd := exec.Command(goBin, "run", "../internal/qapigen", "-pkg", "qmpschema", "-o", tmp, "schema/block-core.json")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	gen, _ := filepath.Glob(filepath.Join(tmp, "*.go"))
	if len(gen) == 0 {
		t.Fatal("generator wrote nothing")
	}
	for _, p := range gen {
		want, _ := os.ReadFile(p)
		got, err := os.ReadFile(filepath.Base(p))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs from a fresh generation: run go generate ./qmpschema", filepath.Base(p))
		}
	}
}

// TestSchemaCopyMatchesShared checks that schema/ is the comment-free copy
// of the shared contract.
func TestSchemaCopyMatchesShared(t *testing.T) {
	shared := qemutest.SharedDir()
	if shared == "" {
		if qemutest.InCI() {
			t.Fatal("../shared (the contract schema) not found; CI must check the copy against it")
		}
		t.Skip("SKIPPING: ../shared not present, schema/ not compared with the contract")
	}
	for _, f := range []string{"block-core.json", "common.json"} {
		src, err := os.ReadFile(filepath.Join(shared, "qapi", f))
		if err != nil {
			t.Fatal(err)
		}
		cp, err := os.ReadFile(filepath.Join("schema", f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(qapi.Strip(src), cp) {
			t.Errorf("schema/%s is not the stripped shared/qapi/%s (go run ./internal/qapigen -strip IN OUT)", f, f)
		}
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) && i < len(bl); i++ {
		if al[i] != bl[i] {
			return "line " + itoa(i+1) + ":\n  disk: " + al[i] + "\n  gen:  " + bl[i]
		}
	}
	return "lengths differ: " + itoa(len(al)) + " vs " + itoa(len(bl)) + " lines"
}

func itoa(i int) string { return strconv.Itoa(i) }
