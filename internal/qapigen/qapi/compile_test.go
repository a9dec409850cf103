package qapi

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestGeneratedCodeCompiles generates Go for a schema that uses every
// feature (including ones block-core.json does not: builtin union branches,
// alternates over int/bool/null, empty structs, sized integers), builds it
// together with qmpschema's hand-written helpers in a scratch module, and
// runs a round-trip program.
func TestGeneratedCodeCompiles(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go tool")
	}
	schema := `
{ 'enum': 'E', 'data': [ 'a', 'b-c' ] }
{ 'struct': 'Empty0' }
{ 'struct': 'B', 'data': { 'k': 'E', '*n': 'int8' } }
{ 'struct': 'S0', 'data': { '*x': ['int'], 'y': 'str', 'z': 'number', '*w': 'any', 'l': ['uint16'] } }
{ 'struct': 'S', 'base': 'S0', 'data': { '*s': 'size' } }
{ 'struct': 'T', 'data': { 'q': 'bool' } }
{ 'union': 'U', 'base': 'B', 'discriminator': 'k', 'data': { 'a': 'S', 'b-c': 'T' } }
{ 'union': 'V', 'data': { 'one': 'S', 'two': 'str', 'three': ['int'] } }
{ 'alternate': 'A', 'data': { 's': 'S', 'n': 'int', 'e': 'E', 'b': 'bool', 'z': 'null' } }
{ 'command': 'c1', 'data': { 'a': 'A', '*u': 'U' }, 'returns': ['S'], 'gen': false, 'success-response': false }
{ 'command': 'c2', 'data': 'S' }
{ 'command': 'c3' }
{ 'event': 'EV', 'data': { '*q': 'uint32', 'v': 'V' } }
{ 'event': 'EV2' }
`
	s, err := ParseSchema("t.json", []byte(schema))
	if err != nil {
		t.Fatal(err)
	}
	files, err := Generate(s, "gentest")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, src string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module gentest\n\ngo 1.24\n")
	for name, src := range files {
		write(name, string(src))
	}
	for _, f := range []string{"entity.go", "errors.go", "json.go"} {
		src, err := os.ReadFile(filepath.Join("..", "..", "..", "qmpschema", f))
		if err != nil {
			t.Fatalf("qmpschema helpers: %v", err)
		}
		write(f, strings.Replace(string(src), "package qmpschema", "package gentest", 1))
	}
	write("roundtrip_test.go", `package gentest

import (
	"encoding/json"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, c := range []struct {
		v  any
		in string
	}{
		{new(U), `+"`"+`{"k":"a","n":-5,"x":[1],"y":"s","z":1.5,"w":{"any":[null]},"l":[65535],"s":18446744073709551615}`+"`"+`},
		{new(U), `+"`"+`{"k":"b-c","q":true}`+"`"+`},
		{new(V), `+"`"+`{"type":"two","data":"hello"}`+"`"+`},
		{new(V), `+"`"+`{"type":"three","data":[1,2]}`+"`"+`},
		{new(A), `+"`"+`5`+"`"+`},
		{new(A), `+"`"+`true`+"`"+`},
		{new(A), `+"`"+`"b-c"`+"`"+`},
		{new(A), `+"`"+`null`+"`"+`},
		{new(A), `+"`"+`{"y":"s","z":0,"l":[]}`+"`"+`},
		{new(C1Args), `+"`"+`{"a":7}`+"`"+`},
		{new(EvEvent), `+"`"+`{"v":{"type":"one","data":{"y":"","z":0,"l":[]}}}`+"`"+`},
		{new(Empty0), `+"`"+`{}`+"`"+`},
	} {
		if err := json.Unmarshal([]byte(c.in), c.v); err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		out, err := json.Marshal(c.v)
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		if string(out) != c.in {
			t.Errorf("round trip %T:\n in  %s\n out %s", c.v, c.in, out)
		}
	}
	if (EvEvent{}).EventName() != "EV" || len(schemaEntities) != 14 || constructors["c3"]() == nil {
		t.Error("tables")
	}
	var e E
	if json.Unmarshal([]byte(`+"`"+`"z"`+"`"+`), &e) == nil {
		t.Error("bad enum accepted")
	}
}
`)
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	for _, args := range [][]string{{"vet", "."}, {"test", "-count=1", "."}} {
		cmd := exec.Command(goBin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %v: %v\n%s", args, err, out)
		}
	}
}
