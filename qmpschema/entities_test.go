package qmpschema

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/blocklayer/blocklayer/internal/qapigen/qapi"
	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// schemaFiles returns the schema to check Entities against: the shared
// originals (with QEMU's comments) when present, and always our copy.
func schemaFiles(t *testing.T) map[string]*qapi.Schema {
	out := map[string]*qapi.Schema{}
	paths := []string{"schema/block-core.json"}
	if d := qemutest.SharedDir(); d != "" {
		paths = append(paths, filepath.Join(d, "qapi", "block-core.json"))
	}
	for _, p := range paths {
		s, err := qapi.Load(p, nil)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out[p] = s
	}
	return out
}

func TestEntitiesCoverSchema(t *testing.T) {
	ents := Entities()
	byName := map[string]Entity{}
	for _, e := range ents {
		byName[e.Name] = e
	}
	for path, s := range schemaFiles(t) {
		if len(s.Entities) != len(ents) {
			t.Errorf("%s: %d entities, Entities() has %d", path, len(s.Entities), len(ents))
		}
		files := map[string]bool{}
		for _, se := range s.Entities {
			files[se.File] = true
			e, ok := byName[se.Name]
			if !ok {
				t.Errorf("%s: %s %s missing from Entities()", path, se.Kind, se.Name)
				continue
			}
			if string(e.Kind) != string(se.Kind) {
				t.Errorf("%s: kind %s, schema says %s", se.Name, e.Kind, se.Kind)
			}
			v, err := NewValue(se.Name)
			if err != nil || v == nil || reflect.TypeOf(v).Kind() != reflect.Pointer {
				t.Errorf("NewValue(%s) = %T, %v", se.Name, v, err)
				continue
			}
			checkGoType(t, s, se, reflect.TypeOf(v).Elem())
		}
		if !files["common.json"] || !files["block-core.json"] {
			t.Errorf("%s: entities came from %v, want both files", path, files)
		}
	}
	if _, err := NewValue("no-such-thing"); err == nil {
		t.Error("NewValue of an unknown name succeeded")
	}
}

// checkGoType compares the Go type of an entity with its definition.
func checkGoType(t *testing.T, s *qapi.Schema, se *qapi.Entity, rt reflect.Type) {
	t.Helper()
	tags := func(rt reflect.Type) map[string]reflect.StructField {
		m := map[string]reflect.StructField{}
		for i := 0; i < rt.NumField(); i++ {
			f := rt.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			m[name] = f
		}
		return m
	}
	wantMembers := func(ms []qapi.Member) {
		got := tags(rt)
		for _, m := range ms {
			f, ok := got[m.Name]
			if !ok {
				t.Errorf("%s: Go type %v has no field for member %q", se.Name, rt, m.Name)
				continue
			}
			optional := f.Type.Kind() == reflect.Pointer || strings.Contains(f.Tag.Get("json"), "omitzero")
			if optional != m.Optional {
				t.Errorf("%s.%s: optional %v, Go field %v %q", se.Name, m.Name, m.Optional, f.Type, f.Tag)
			}
		}
	}
	switch se.Kind {
	case qapi.KindEnum:
		if rt.Kind() != reflect.String {
			t.Errorf("%s: enum as %v", se.Name, rt)
		}
		for _, v := range se.Values {
			p := reflect.New(rt)
			if err := json.Unmarshal([]byte(`"`+v+`"`), p.Interface()); err != nil {
				t.Errorf("%s: value %q refused: %v", se.Name, v, err)
			}
		}
		if err := json.Unmarshal([]byte(`"no such value"`), reflect.New(rt).Interface()); err == nil {
			t.Errorf("%s accepts an unknown value", se.Name)
		}
	case qapi.KindStruct:
		ms, _ := s.AllMembers(se)
		wantMembers(ms)
	case qapi.KindUnion:
		if se.Base != "" {
			ms, _ := s.AllMembers(s.Lookup(se.Base))
			wantMembers(ms)
		}
		for _, v := range se.Variants {
			if _, ok := rt.FieldByName(qapi.Camel(v.Name)); !ok {
				t.Errorf("%s: no field for branch %s", se.Name, v.Name)
			}
		}
	case qapi.KindAlternate:
		for _, v := range se.Variants {
			if f, ok := rt.FieldByName(qapi.Camel(v.Name)); !ok || f.Type.Kind() != reflect.Pointer {
				t.Errorf("%s: no pointer field for branch %s", se.Name, v.Name)
			}
		}
	case qapi.KindCommand, qapi.KindEvent:
		switch {
		case se.Data != "":
			if rt.Name() != se.Data {
				t.Errorf("%s: arguments type %v, want %s", se.Name, rt, se.Data)
			}
		case len(se.Members) > 0:
			wantMembers(se.Members)
		default:
			if rt != reflect.TypeFor[Empty]() {
				t.Errorf("%s: no arguments/data but type %v", se.Name, rt)
			}
		}
		if se.Kind == qapi.KindEvent && se.Data == "" && len(se.Members) > 0 {
			ev, ok := reflect.New(rt).Elem().Interface().(Event)
			if !ok || ev.EventName() != se.Name {
				t.Errorf("%s: data type %v does not name its event", se.Name, rt)
			}
		}
	}
}

func TestExactScalarTypes(t *testing.T) {
	want := map[string]any{
		"BlockDirtyInfo.Granularity":              uint32(0),
		"BlockdevOptionsNull.LatencyNs":           (*uint64)(nil),
		"BlockWriteThresholdEvent.AmountExceeded": uint64(0),
		"SnapshotInfo.VmStateSize":                int64(0),
		"BlockdevCacheInfo.Writeback":             false,
		"ImageInfo.Filename":                      "",
		"ImageInfo.DirtyFlag":                     (*bool)(nil),
		"ImageInfo.Snapshots":                     []SnapshotInfo(nil),
	}
	for path, v := range want {
		typ, field, _ := strings.Cut(path, ".")
		p, err := NewValue(typ)
		if err != nil {
			t.Fatal(err)
		}
		f, ok := reflect.TypeOf(p).Elem().FieldByName(field)
		if !ok || f.Type != reflect.TypeOf(v) {
			t.Errorf("%s: %v, want %T", path, f.Type, v)
		}
	}
	e, ok := Lookup("block_resize")
	if !ok || e.Data != "BlockResizeArgs" || e.Kind != KindCommand {
		t.Errorf("Lookup(block_resize) = %+v", e)
	}
	if e, ok := Lookup("BlockResizeArgs"); !ok || !e.Implicit || len(e.Members) != 3 {
		t.Errorf("Lookup(BlockResizeArgs) = %+v", e)
	}
	for _, e := range Entities() {
		if e.Implicit {
			t.Errorf("Entities() lists implicit %s", e.Name)
		}
	}
	if _, err := os.Stat("schema/common.json"); err != nil {
		t.Error(err)
	}
}
