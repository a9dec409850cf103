package qmpschema

import (
	"encoding/json"
	"errors"
	"testing"
)

func reencode(t *testing.T, in string, v any) string {
	t.Helper()
	if err := json.Unmarshal([]byte(in), v); err != nil {
		t.Fatalf("decode %s: %v", in, err)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return string(out)
}

func sameJSON(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("%v: %s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%v: %s", err, want)
	}
	if err := contains("", g, w); err != nil {
		t.Errorf("%v\n got:  %s\n want: %s", err, got, want)
	}
	if err := contains("", w, g); err != nil {
		t.Errorf("extra: %v\n got:  %s\n want: %s", err, got, want)
	}
}

func TestBlockdevOptionsFlatUnion(t *testing.T) {
	in := `{"driver": "qcow2", "node-name": "disk0", "read-only": false, "cache": {"direct": true},
		"file": {"driver": "file", "filename": "/img/a.qcow2", "aio": "native"},
		"backing": "base0", "lazy-refcounts": true, "overlap-check": "cached",
		"detect-zeroes": "unmap"}`
	var o BlockdevOptions
	out := reencode(t, in, &o)
	sameJSON(t, out, in)
	if o.Driver != BlockdevDriverQcow2 || o.Qcow2 == nil || o.File != nil {
		t.Fatalf("branch: %+v", o)
	}
	q := o.Qcow2
	if q.File.Definition == nil || q.File.Definition.Driver != BlockdevDriverFile || q.File.Definition.File.Filename != "/img/a.qcow2" {
		t.Errorf("file: %+v", q.File)
	}
	if q.Backing == nil || q.Backing.Reference == nil || *q.Backing.Reference != "base0" {
		t.Errorf("backing: %+v", q.Backing)
	}
	if q.OverlapCheck == nil || q.OverlapCheck.Mode == nil || *q.OverlapCheck.Mode != Qcow2OverlapCheckModeCached {
		t.Errorf("overlap-check: %+v", q.OverlapCheck)
	}
	if o.ReadOnly == nil || *o.ReadOnly {
		t.Error("read-only: false must stay present and false")
	}
	if o.ID != nil || o.Discard != nil {
		t.Error("absent members must stay nil")
	}

	// Quorum: a mandatory list of alternates, and vvfat/null branches.
	for _, in := range []string{
		`{"driver": "quorum", "vote-threshold": 2, "children": ["a", {"driver": "raw", "file": "b"}], "read-pattern": "fifo"}`,
		`{"driver": "null-co"}`,
		`{"driver": "null-aio", "size": 1024, "latency-ns": 18446744073709551615}`,
		`{"driver": "blkdebug", "image": "x", "inject-error": [{"event": "l1_grow.alloc_table", "errno": 5}]}`,
		`{"driver": "qcow2", "file": "f", "overlap-check": {"template": "all", "main-header": false}}`,
	} {
		var o BlockdevOptions
		sameJSON(t, reencode(t, in, &o), in)
	}

	// Encoding from Go: only the branch matching Driver is written; an
	// empty mandatory list is [] not null.
	name := "n"
	o = BlockdevOptions{Driver: BlockdevDriverQuorum, NodeName: &name, Quorum: &BlockdevOptionsQuorum{VoteThreshold: 1}, File: &BlockdevOptionsFile{Filename: "ignored"}}
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, string(b), `{"driver": "quorum", "node-name": "n", "children": [], "vote-threshold": 1}`)

	for _, bad := range []string{
		`{"driver": "nope", "filename": "x"}`,
		`{"filename": "x"}`,
		`{"driver": "qcow2", "file": 5}`,
		`{"driver": "qcow2", "file": "f", "overlap-check": "sometimes"}`,
		`{"driver": "file", "filename": "x", "aio": "fast"}`,
	} {
		var o BlockdevOptions
		err := json.Unmarshal([]byte(bad), &o)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err %v, want ErrInvalid", bad, err)
		}
	}
}

func TestImageInfoSpecificSimpleUnion(t *testing.T) {
	in := `{"type": "vmdk", "data": {"create-type": "monolithicSparse", "cid": 1, "parent-cid": 4294967295,
		"extents": [{"filename": "a.vmdk", "format": "SPARSE", "virtual-size": 1048576, "cluster-size": 65536}]}}`
	var u ImageInfoSpecific
	sameJSON(t, reencode(t, in, &u), in)
	if u.Vmdk == nil || u.Qcow2 != nil || u.Vmdk.Extents[0].ClusterSize == nil {
		t.Errorf("%+v", u)
	}
	in = `{"type": "qcow2", "data": {"compat": "0.10", "refcount-bits": 16}}`
	u = ImageInfoSpecific{}
	sameJSON(t, reencode(t, in, &u), in)
	if u.Qcow2.LazyRefcounts != nil {
		t.Error("absent lazy-refcounts decoded as present")
	}
	for _, bad := range []string{`{"type": "luks", "data": {}}`, `{"data": {}}`, `{"type": "qcow2"}`} {
		if err := json.Unmarshal([]byte(bad), &u); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", bad, err)
		}
	}
	if _, err := json.Marshal(ImageInfoSpecific{Type: ImageInfoSpecificKindQcow2}); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil branch encoded: %v", err)
	}
}

func TestAlternates(t *testing.T) {
	var r BlockdevRef
	sameJSON(t, reencode(t, `"node1"`, &r), `"node1"`)
	if r.Reference == nil || r.Definition != nil {
		t.Errorf("%+v", r)
	}
	r = BlockdevRef{}
	sameJSON(t, reencode(t, `{"driver": "file", "filename": "/x"}`, &r), `{"driver": "file", "filename": "/x"}`)
	for _, bad := range []string{`5`, `true`, `null`, `[]`} {
		var r BlockdevRef
		err := json.Unmarshal([]byte(bad), &r)
		var ae *AlternateError
		if !errors.As(err, &ae) {
			t.Errorf("%s: %v", bad, err)
		}
	}
	if _, err := json.Marshal(BlockdevRef{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty alternate encoded: %v", err)
	}
	var c Qcow2OverlapChecks
	sameJSON(t, reencode(t, `{"template": "constant", "inactive-l2": true}`, &c), `{"template": "constant", "inactive-l2": true}`)
	if c.Flags == nil || c.Flags.InactiveL2 == nil || !*c.Flags.InactiveL2 {
		t.Errorf("%+v", c)
	}
	c = Qcow2OverlapChecks{}
	sameJSON(t, reencode(t, `"none"`, &c), `"none"`)
}

func TestEnums(t *testing.T) {
	var d BlockdevDriver
	if err := json.Unmarshal([]byte(`"host_device"`), &d); err != nil || d != BlockdevDriverHostDevice {
		t.Errorf("%v %v", d, err)
	}
	err := json.Unmarshal([]byte(`"floppy"`), &d)
	var ee *EnumError
	if !errors.As(err, &ee) || ee.Type != "BlockdevDriver" || ee.Value != "floppy" {
		t.Errorf("%v", err)
	}
	if err := json.Unmarshal([]byte(`3`), &d); err == nil {
		t.Error("number accepted as enum")
	}
	if !BlkdebugEventL1GrowAllocTable.Valid() || BlockdevDriver("x").Valid() {
		t.Error("Valid")
	}
	if string(ErrorClassKVMMissingCap) != "KVMMissingCap" {
		t.Error(ErrorClassKVMMissingCap)
	}
}

func TestOptionalMembers(t *testing.T) {
	// Zero values of optional members are present; absent ones are nil.
	sameJSON(t, reencode(t, `{"filename": "a", "format": "raw", "virtual-size": 0, "dirty-flag": false, "actual-size": 0, "snapshots": []}`, new(ImageInfo)),
		`{"filename": "a", "format": "raw", "virtual-size": 0, "dirty-flag": false, "actual-size": 0, "snapshots": []}`)
	sameJSON(t, reencode(t, `{"filename": "a", "format": "raw", "virtual-size": 0}`, new(ImageInfo)),
		`{"filename": "a", "format": "raw", "virtual-size": 0}`)
	// Mandatory members are always written, even when zero.
	b, _ := json.Marshal(BlockDeviceMapEntry{})
	sameJSON(t, string(b), `{"start": 0, "length": 0, "depth": 0, "zero": false, "data": false}`)
	// Exact integer types: uint32 refuses out-of-range values.
	var bdi BlockDirtyInfo
	if err := json.Unmarshal([]byte(`{"count": 1, "granularity": 4294967296, "status": "active"}`), &bdi); err == nil {
		t.Error("uint32 overflow accepted")
	}
	var ev BlockWriteThresholdEvent
	sameJSON(t, reencode(t, `{"node-name": "n", "amount-exceeded": 18446744073709551615, "write-threshold": 1}`, &ev),
		`{"node-name": "n", "amount-exceeded": 18446744073709551615, "write-threshold": 1}`)
}

func TestContainsDetectsLoss(t *testing.T) {
	if contains("", map[string]any{"a": 1.0}, map[string]any{"a": 1.0, "b": true}) == nil {
		t.Error("lost member not reported")
	}
	if contains("", []any{1.0}, []any{1.0, 2.0}) == nil {
		t.Error("lost element not reported")
	}
}
