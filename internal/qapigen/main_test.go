package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.json")
	os.WriteFile(in, []byte("# doc\n{ 'include': 'inc.json' } # why\n\n\n{ 'struct': 'S', 'data': { 'e': 'E' } }\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "inc.json"), []byte("{ 'enum': 'E', 'data': [ 'a' ] }\n"), 0o644)
	out := filepath.Join(dir, "out.json")
	if err := run(true, "", "", []string{in, out}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if want := "{ 'include': 'inc.json' }\n\n{ 'struct': 'S', 'data': { 'e': 'E' } }\n"; string(got) != want {
		t.Errorf("strip: %q", got)
	}
	gen := filepath.Join(dir, "gen")
	os.Mkdir(gen, 0o755)
	if err := run(false, "p", gen, []string{out}); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(gen, "types_gen.go"))
	if err != nil || !bytes.Contains(src, []byte("type S struct")) || !bytes.Contains(src, []byte("EA E = \"a\"")) {
		t.Errorf("generated: %v\n%s", err, src)
	}
	if err := run(false, "p", gen, nil); err == nil {
		t.Error("no schema accepted")
	}
	if err := run(true, "", "", []string{in}); err == nil {
		t.Error("-strip with one file accepted")
	}
}
