package qapi

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sharedQAPI = "../../../../shared/qapi"

// skipOutsideCI skips when the shared contract schema is absent on a
// developer's machine, and fails under CI, where ../shared is always laid.
func skipOutsideCI(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf("SKIPPING: "+format, args...)
}

func loadShared(t *testing.T, dir string) *Schema {
	t.Helper()
	p := filepath.Join(dir, "block-core.json")
	if _, err := os.Stat(p); err != nil {
		skipOutsideCI(t, "schema not found: %v", err)
	}
	s, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLoadBlockCore(t *testing.T) {
	for _, dir := range []string{sharedQAPI, "../../../qmpschema/schema"} {
		t.Run(dir, func(t *testing.T) {
			s := loadShared(t, dir)
			kinds := map[Kind]int{}
			for _, e := range s.Entities {
				kinds[e.Kind]++
			}
			// block-core.json (QEMU 2.4) plus common.json.
			want := map[Kind]int{KindStruct: 36, KindEnum: 17, KindUnion: 2, KindAlternate: 2, KindCommand: 26, KindEvent: 7} // counted with grep
			for k, n := range want {
				if kinds[k] != n {
					t.Errorf("%s: got %d, want %d (all: %v)", k, kinds[k], n, kinds)
				}
			}
			u := s.Lookup("BlockdevOptions")
			if u == nil || u.Kind != KindUnion || u.Base != "BlockdevOptionsBase" || u.Discriminator != "driver" || len(u.Variants) != 28 {
				t.Fatalf("BlockdevOptions: %+v", u)
			}
			if v := u.Variants[17]; v.Name != "qcow2" || v.Type.Name != "BlockdevOptionsQcow2" {
				t.Errorf("variant 17: %+v", v)
			}
			q, err := s.AllMembers(s.Lookup("BlockdevOptionsQcow2"))
			if err != nil || q[0].Name != "file" || q[1].Name != "backing" || !q[1].Optional || q[2].Name != "lazy-refcounts" {
				t.Errorf("qcow2 members (base first): %+v %v", q, err)
			}
			ii := s.Lookup("ImageInfoSpecific")
			if ii.Discriminator != "" || len(ii.Variants) != 2 {
				t.Errorf("ImageInfoSpecific: %+v", ii)
			}
			c := s.Lookup("query-commands")
			if c.Returns == nil || !c.Returns.List || c.Returns.Name != "CommandInfo" {
				t.Errorf("query-commands returns %+v", c.Returns)
			}
			if d := s.Lookup("blockdev-snapshot-sync"); d.Data != "BlockdevSnapshot" || !d.HasData {
				t.Errorf("blockdev-snapshot-sync data %+v", d)
			}
			if e := s.Lookup("BLOCK_IO_ERROR"); e.Kind != KindEvent || len(e.Members) != 5 || !e.Members[3].Optional {
				t.Errorf("BLOCK_IO_ERROR: %+v", e)
			}
			if e := s.Lookup("ErrorClass"); e.File != "common.json" || len(e.Values) != 6 {
				t.Errorf("ErrorClass: %+v", e)
			}
		})
	}
}

func TestStripKeepsDefinitions(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(sharedQAPI, "block-core.json"))
	if err != nil {
		skipOutsideCI(t, "schema not found: %v", err)
	}
	a, err := Parse("a", src)
	if err != nil {
		t.Fatal(err)
	}
	stripped := Strip(src)
	if strings.Contains(string(stripped), "#") {
		t.Error("comment left after Strip")
	}
	b, err := Parse("b", stripped)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(b) {
		t.Fatalf("%d expressions before, %d after", len(a), len(b))
	}
	copyOnDisk, err := os.ReadFile("../../../qmpschema/schema/block-core.json")
	if err == nil && string(copyOnDisk) != string(stripped) {
		t.Error("qmpschema/schema/block-core.json differs from the stripped shared schema; refresh with qapigen -strip")
	}
	if got := string(Strip([]byte("{ 'a': 'x#y' } # c\n\n\n# d\n{ 'b': 1 }\n"))); got != "{ 'a': 'x#y' }\n\n{ 'b': 1 }\n" {
		t.Errorf("Strip: %q", got)
	}
}

func TestSyntax(t *testing.T) {
	good := `# comment
{ 'enum': 'E', 'data': [ 'a', 'b-c', {'name': 'd'} ] }
{ 'struct': 'B', 'data': { 'k': 'E' } }
{ 'struct': 'S0', 'data': { '*x': ['int'], 'y': 'str', 'z': {'type': 'number'} } } # trailing
{ 'struct': 'S', 'base': 'S0' }
{ 'union': 'U', 'base': 'B', 'discriminator': 'k', 'data': { 'a': 'S' } }
{ 'union': 'V', 'data': { 'one': 'S', 'two': 'str' } }
{ 'alternate': 'A', 'data': { 's': 'S', 'n': 'int', 'e': 'E', 'b': 'bool' } }
{ 'command': 'c1', 'data': { 'a': 'A' }, 'returns': ['S'], 'gen': false, 'success-response': false }
{ 'command': 'c2', 'data': 'S' }
{ 'command': 'c3' }
{ 'event': 'EV', 'data': { '*q': 'uint32' } }
{ 'event': 'EV2' }
{ 'pragma': { 'x': true } }
`
	s, err := ParseSchema("t.json", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c := s.Lookup("c1"); c.Gen || c.SuccessRsp || c.Returns.String() != "[S]" {
		t.Errorf("c1: %+v", c)
	}
	if e := s.Lookup("E"); strings.Join(e.Values, ",") != "a,b-c,d" {
		t.Errorf("E: %v", e.Values)
	}
	if _, err := Generate(s, "x"); err != nil {
		t.Fatal(err)
	}

	bad := map[string]string{
		"double quotes":       `{ "struct": 'S' }`,
		"unterminated":        `{ 'struct': 'S`,
		"top-level list":      `[ 1 ]`,
		"missing colon":       `{ 'struct' 'S' }`,
		"unknown type":        `{ 'struct': 'S', 'data': { 'a': 'Nope' } }`,
		"unknown key":         `{ 'struct': 'S', 'color': 'red' }`,
		"duplicate":           `{ 'enum': 'E', 'data': ['a'] } { 'enum': 'E', 'data': ['b'] }`,
		"dup member":          `{ 'struct': 'S', 'data': { 'a': 'int', '*a': 'int' } }`,
		"no meta":             `{ 'data': {} }`,
		"base loop":           `{ 'struct': 'A', 'base': 'B' } { 'struct': 'B', 'base': 'A' }`,
		"disc not enum":       `{ 'struct': 'B', 'data': { 'k': 'str' } } { 'struct': 'S' } { 'union': 'U', 'base': 'B', 'discriminator': 'k', 'data': { 'a': 'S' } }`,
		"branch not value":    `{ 'enum': 'E', 'data': ['a'] } { 'struct': 'B', 'data': { 'k': 'E' } } { 'struct': 'S' } { 'union': 'U', 'base': 'B', 'discriminator': 'k', 'data': { 'z': 'S' } }`,
		"alternate ambiguous": `{ 'alternate': 'A', 'data': { 'a': 'int', 'b': 'number' } }`,
		"go name clash":       `{ 'struct': 'S', 'data': { 'a-b': 'int', 'a_b': 'int' } }`,
		"deep":                strings.Repeat("{ 'a': [", 100),
		"include missing":     `{ 'include': 'nope.json' }`,
		"bad escape":          `{ 'struct': 'S\q' }`,
	}
	for name, src := range bad {
		s, err := ParseSchema("t.json", []byte(src))
		if err == nil {
			_, err = Generate(s, "x")
		}
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrSchema) {
			t.Errorf("%s: error %v wraps neither ErrSyntax nor ErrSchema", name, err)
		}
	}
}

func TestCamel(t *testing.T) {
	for in, want := range map[string]string{
		"node-name": "NodeName", "iops_rd": "IopsRd", "l1_grow.alloc_table": "L1GrowAllocTable",
		"BLOCK_IO_ERROR": "BlockIoError", "id": "ID", "null-aio": "NullAio", "3d": "X3d",
		"vm-state-size": "VmStateSize", "query-version": "QueryVersion",
	} {
		if got := Camel(in); got != want {
			t.Errorf("Camel(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, p := range []string{filepath.Join(sharedQAPI, "block-core.json"), filepath.Join(sharedQAPI, "common.json")} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
			// Also each definition on its own, so mutations stay small.
			exprs, _ := Parse("x", Strip(b))
			_ = exprs
			for _, chunk := range strings.Split(string(Strip(b)), "\n\n") {
				f.Add([]byte(chunk))
			}
		}
	}
	f.Add([]byte(`{ 'union': 'V', 'data': { 'one': 'S', 'two': 'str' } } { 'struct': 'S' }`))
	f.Fuzz(func(t *testing.T, src []byte) {
		s, err := ParseSchema("fuzz.json", src)
		if err != nil {
			if !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrSchema) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		// Whatever parses and checks must generate valid Go.
		if _, err := Generate(s, "fuzz"); err != nil && !errors.Is(err, ErrSchema) {
			t.Fatalf("generate: %v", err)
		}
	})
}
