package qmpschema

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// newFor returns a pointer to a fresh Go value for schema type expression
// typ ("X" or "[X]").
func newFor(t testing.TB, typ string) any {
	t.Helper()
	if strings.HasPrefix(typ, "[") {
		elem, err := NewValue(typ[1 : len(typ)-1])
		if err != nil {
			t.Fatal(err)
		}
		return reflect.New(reflect.SliceOf(reflect.TypeOf(elem).Elem())).Interface()
	}
	v, err := NewValue(typ)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func generic(t testing.TB, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return v
}

// project keeps only what the schema type typ defines of the generic JSON
// value v: unknown members (added by newer QEMU) are dropped.
func project(typ string, v any) any {
	if strings.HasPrefix(typ, "[") {
		list, ok := v.([]any)
		if !ok {
			return v
		}
		out := make([]any, len(list))
		for i, x := range list {
			out[i] = project(typ[1:len(typ)-1], x)
		}
		return out
	}
	e, ok := lookupTable[typ]
	if !ok {
		return v // builtin
	}
	obj, isObj := v.(map[string]any)
	out := map[string]any{}
	keep := func(ent *Entity) {
		for ent != nil {
			for _, m := range ent.Members {
				if x, ok := obj[m.Name]; ok {
					out[m.Name] = project(m.Type, x)
				}
			}
			ent = lookupTable[ent.Base]
		}
	}
	switch e.Kind {
	case KindStruct:
		if !isObj {
			return v
		}
		keep(e)
	case KindUnion:
		if !isObj {
			return v
		}
		if e.Discriminator == "" {
			out["type"] = obj["type"]
			for _, vr := range e.Variants {
				if vr.Name == obj["type"] {
					out["data"] = project(vr.Type, obj["data"])
				}
			}
			return out
		}
		keep(lookupTable[e.Base])
		for _, vr := range e.Variants {
			if vr.Name == obj[e.Discriminator] {
				keep(lookupTable[vr.Type])
			}
		}
	case KindAlternate:
		for _, vr := range e.Variants {
			if altKind(vr.Type) == jsonKindOfValue(v) {
				return project(vr.Type, v)
			}
		}
		return v
	default:
		return v
	}
	return out
}

// contains reports where want (a projected original) is not contained in
// got (the re-encoding): every member of want must be in got with an equal
// value; got may have more (mandatory 2.4 members modern QEMU omits).
func contains(path string, got, want any) error {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: got %v, want an object", path, got)
		}
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			gv, ok := g[k]
			if !ok {
				return fmt.Errorf("%s.%s: lost", path, k)
			}
			if err := contains(path+"."+k, gv, w[k]); err != nil {
				return err
			}
		}
		return nil
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Errorf("%s: got %v, want %d elements", path, got, len(w))
		}
		for i := range w {
			if err := contains(fmt.Sprintf("%s[%d]", path, i), g[i], w[i]); err != nil {
				return err
			}
		}
		return nil
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Errorf("%s: got %v, want %v", path, got, want)
	}
	return nil
}

// roundTrip decodes b into the Go type of typ, re-encodes it, and checks
// that every member the schema defines survived.
func roundTrip(t *testing.T, what, typ string, b []byte) {
	t.Helper()
	v := newFor(t, typ)
	if err := json.Unmarshal(b, v); err != nil {
		t.Errorf("%s: decoding as %s: %v", what, typ, err)
		return
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Errorf("%s: re-encoding %s: %v", what, typ, err)
		return
	}
	want := project(typ, generic(t, b))
	if err := contains(typ, generic(t, out), want); err != nil {
		t.Errorf("%s: %v\n in:  %s\n out: %s", what, err, b, out)
	}
}

// TestQemuImgJSON decodes qemu-img 7.2's info/check/map --output=json of
// the reference corpus into ImageInfo, ImageCheck and
// []BlockDeviceMapEntry and re-encodes them.
func TestQemuImgJSON(t *testing.T) {
	dir := qemutest.Corpus(t)
	kinds := map[string]string{
		".info.json":  "ImageInfo",
		".check.json": "ImageCheck",
		".map.json":   "[BlockDeviceMapEntry]",
		".chain.json": "[ImageInfo]", // info --backing-chain
	}
	counts := map[string]int{}
	for suffix, typ := range kinds {
		files, _ := filepath.Glob(filepath.Join(dir, "*"+suffix))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(bytes.TrimSpace(b)) == 0 {
				continue // qemu-img printed nothing (refused image)
			}
			roundTrip(t, filepath.Base(f), typ, b)
			counts[typ]++
		}
	}
	t.Logf("round-tripped %v", counts)
	for _, typ := range []string{"ImageInfo", "ImageCheck", "[BlockDeviceMapEntry]"} {
		if counts[typ] < 5 {
			t.Errorf("only %d corpus files for %s", counts[typ], typ)
		}
	}
	// The vmdk extents and qcow2 specifics really decode into the union.
	b, err := os.ReadFile(filepath.Join(dir, "vmdk-twoGbMaxExtentSparse.vmdk.info.json"))
	if err == nil {
		var info ImageInfo
		if err := json.Unmarshal(b, &info); err != nil {
			t.Fatal(err)
		}
		fs := info.FormatSpecific
		if fs == nil || fs.Type != ImageInfoSpecificKindVmdk || fs.Vmdk == nil || len(fs.Vmdk.Extents) != 3 || fs.Vmdk.ParentCid != 4294967295 {
			t.Errorf("vmdk format-specific: %+v", fs)
		}
	}
}

type transcriptLine struct {
	Seq  int             `json:"seq"`
	Dir  string          `json:"dir"`
	JSON json.RawMessage `json:"json"`
}

func readTranscript(t testing.TB) []transcriptLine {
	t.Helper()
	f, err := os.Open("testdata/qsd-transcript.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []transcriptLine
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l transcriptLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	return out
}

// TestTranscriptReplies decodes the replies and events qemu-storage-daemon
// 7.2 sent (testdata/qsd-transcript.jsonl) into the 2.4 types.
func TestTranscriptReplies(t *testing.T) {
	var last string
	decoded, skipped := map[string]int{}, map[string]int{}
	for _, l := range readTranscript(t) {
		var m struct {
			Execute string          `json:"execute"`
			Return  json.RawMessage `json:"return"`
			Event   string          `json:"event"`
			Data    json.RawMessage `json:"data"`
			QMP     json.RawMessage `json:"QMP"`
			Error   *struct {
				Class ErrorClass `json:"class"`
				Desc  string     `json:"desc"`
			} `json:"error"`
		}
		if err := json.Unmarshal(l.JSON, &m); err != nil {
			t.Fatalf("seq %d: %v", l.Seq, err)
		}
		what := fmt.Sprintf("seq %d", l.Seq)
		switch {
		case l.Dir == "client->server":
			last = m.Execute
		case m.QMP != nil:
			var g struct {
				Version VersionInfo `json:"version"`
			}
			roundTrip(t, what, "VersionInfo", mustJSON(t, generic(t, m.QMP).(map[string]any)["version"]))
			if err := json.Unmarshal(m.QMP, &g); err != nil || g.Version.Qemu.Major != 7 {
				t.Errorf("greeting: %+v %v", g, err)
			}
		case m.Error != nil:
			decoded["error"]++ // ErrorClass enum validated by decoding
		case m.Event != "":
			e, ok := lookupTable[m.Event]
			if !ok || e.Kind != KindEvent {
				skipped[m.Event]++
				continue
			}
			roundTrip(t, what, e.Data, m.Data)
			decoded[m.Event]++
		case m.Return != nil:
			e, ok := lookupTable[last]
			if !ok || e.Kind != KindCommand {
				skipped[last]++
				continue
			}
			typ := e.Returns
			if typ == "" {
				if string(bytes.TrimSpace(m.Return)) != "{}" {
					t.Errorf("%s: %s returned %s", what, last, m.Return)
				}
				decoded[last]++
				continue
			}
			roundTrip(t, what, typ, m.Return)
			decoded[last]++
		}
	}
	t.Logf("decoded %v; not in the 2.4 schema: %v", decoded, skipped)
	for _, want := range []string{"query-version", "query-named-block-nodes", "query-block-jobs", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_READY", "error"} {
		if decoded[want] == 0 {
			t.Errorf("nothing decoded for %s", want)
		}
	}
}

func mustJSON(t testing.TB, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
