package qmpschema

import (
	"errors"
	"strings"
	"testing"
)

// The expected messages were checked against qemu-storage-daemon 7.2
// (see also TestDifferentialQSD).
func TestCheckArguments(t *testing.T) {
	cases := []struct {
		typ, args, want string
	}{
		{"BlockResizeArgs", `{"device": "a", "size": 1}`, ""},
		{"BlockResizeArgs", `{"device": "a", "size": "1"}`, "Invalid parameter type for 'size', expected: integer"},
		{"BlockResizeArgs", `{"device": "a", "size": 1.5}`, "Invalid parameter type for 'size', expected: integer"},
		{"BlockResizeArgs", `{"device": "a", "size": 1e3}`, "Invalid parameter type for 'size', expected: integer"},
		{"BlockResizeArgs", `{"device": "a", "size": 99999999999999999999}`, "Invalid parameter type for 'size', expected: integer"},
		{"BlockResizeArgs", `{"device": 3, "size": 1}`, "Invalid parameter type for 'device', expected: string"},
		{"BlockResizeArgs", `{"device": "a", "size": 1, "y": 2}`, "Parameter 'y' is unexpected"},
		{"BlockResizeArgs", `{"device": "a"}`, "Parameter 'size' is missing"},
		{"BlockDirtyBitmapAdd", `{"node": "a"}`, "Parameter 'name' is missing"},
		{"BlockDirtyBitmapAdd", `{}`, "Parameter 'node' is missing"},
		{"BlockDirtyBitmapAdd", `{"node": "a", "name": "b", "granularity": -1}`, "Parameter 'granularity' expects uint32_t"},
		{"BlockDirtyBitmapAdd", `{"node": "a", "name": "b", "granularity": 99999999999}`, "Parameter 'granularity' expects uint32_t"},
		{"BlockDirtyBitmapAdd", `{"node": "a", "name": "b", "granularity": 1.5}`, "Parameter 'granularity' expects uint64"},
		{"BlockDirtyBitmapAdd", `{"node": "a", "name": "b", "granularity": 65536}`, ""},
		{"BlockdevOptions", `{"driver": "bogus"}`, "Parameter 'driver' does not accept value 'bogus'"},
		{"BlockdevOptions", `{"node-name": "x"}`, "Parameter 'driver' is missing"},
		{"BlockdevOptions", `{"driver": "qcow2"}`, "Parameter 'file' is missing"},
		{"BlockdevOptions", `{"driver": "qcow2", "file": {"driver": "file"}}`, "Parameter 'file.filename' is missing"},
		{"BlockdevOptions", `{"driver": "qcow2", "file": {"driver": "file", "filename": "/x", "zz": 1}}`, "Parameter 'file.zz' is unexpected"},
		{"BlockdevOptions", `{"driver": "qcow2", "file": 5}`, "Invalid parameter type for 'file', expected: BlockdevRef"},
		{"BlockdevOptions", `{"driver": "qcow2", "file": "n", "cache": {"direct": 1}}`, "Invalid parameter type for 'cache.direct', expected: boolean"},
		{"BlockdevOptions", `{"driver": "qcow2", "file": "n", "overlap-check": 5}`, "Invalid parameter type for 'overlap-check', expected: Qcow2OverlapChecks"},
		{"BlockdevOptions", `{"driver": "qcow2", "file": "n", "overlap-check": "bad"}`, "Parameter 'overlap-check' does not accept value 'bad'"},
		{"BlockdevOptions", `{"driver": "qcow2", "file": "n", "overlap-check": {"template": "all", "x": 1}}`, "Parameter 'overlap-check.x' is unexpected"},
		{"BlockdevOptions", `{"driver": "quorum", "vote-threshold": 1, "children": ["a", {"driver": "file"}]}`, "Parameter 'children[1].filename' is missing"},
		{"BlockdevOptions", `{"driver": "quorum", "vote-threshold": 1, "children": [1]}`, "Invalid parameter type for 'null', expected: BlockdevRef"},
		{"BlockdevOptions", `{"driver": "quorum", "vote-threshold": 1, "children": [{"driver": "nope"}]}`, "Parameter 'driver' does not accept value 'nope'"},
		{"BlockdevOptions", `{"driver": "blkdebug", "image": "n", "inject-error": [5]}`, "Invalid parameter type for 'inject-error[0]', expected: object"},
		{"BlockDirtyBitmapAdd", `{"node": "a", "name": "b", "granularity": "x"}`, "Parameter 'granularity' expects uint64"},
		{"BlockdevOptions", `{"driver": "quorum", "vote-threshold": 1, "children": {}}`, "Invalid parameter type for 'children', expected: array"},
		{"BlockdevOptions", `{"driver": "null-co", "latency-ns": 18446744073709551615}`, ""},
		{"BlockdevOptions", `{"driver": "null-co", "filename": "x"}`, "Parameter 'filename' is unexpected"},
		{"BlockdevOptions", `{"driver": "vvfat", "dir": "/", "fat-type": 16, "floppy": true, "label": "L", "rw": false, "read-only": true}`, ""},
		{"BlockdevAddArgs", `{"options": {"driver": "raw", "file": {"driver": "file", "filename": "/x"}}}`, ""},
		{"BlockdevAddArgs", `{"options": {"driver": "raw", "file": {"driver": "file"}}}`, "Parameter 'options.file.filename' is missing"},
		{"ImageInfoSpecific", `{"type": "qcow2", "data": {"compat": "1.1", "refcount-bits": 16}}`, ""},
		{"ImageInfoSpecific", `{"type": "qcow3", "data": {}}`, "Parameter 'type' does not accept value 'qcow3'"},
		{"ImageInfoSpecific", `{"type": "qcow2"}`, "Parameter 'data' is missing"},
		{"ImageInfoSpecific", `{"type": "qcow2", "data": {"compat": "1.1"}}`, "Parameter 'data.refcount-bits' is missing"},
	}
	for _, c := range cases {
		err := CheckArguments(c.typ, generic(t, []byte(c.args)))
		got := ""
		if err != nil {
			var qe *Error
			if !errors.As(err, &qe) || qe.Class != ErrorClassGenericError {
				t.Errorf("%s %s: error %v is not a GenericError", c.typ, c.args, err)
			}
			got = qe.Desc
		}
		if got != c.want {
			t.Errorf("%s %s:\n got  %q\n want %q", c.typ, c.args, got, c.want)
		}
	}
}

func TestCheckJSON(t *testing.T) {
	for in, want := range map[string]string{
		`{'driver': 'raw', 'file': 'n'}`:              "",
		`{"driver": "raw", "file": "n", "file": "m"}`: "JSON parse error, duplicate key",
		`{"driver": "raw", "file": "n"} {}`:           "JSON parse error, trailing data",
		`{"driver": "raw", "file": "n",}`:             "JSON parse error",
		`{"driver": "raw"}`:                           "Parameter 'file' is missing",
		`{"driver": "raw", "file": "n", "size": 1}`:   "Parameter 'size' is unexpected",
		``: "JSON parse error",
	} {
		err := CheckJSON("BlockdevOptions", []byte(in))
		got := ""
		if err != nil {
			got = err.(*Error).Desc
		}
		if want == "" && got != "" || !strings.HasPrefix(got, want) {
			t.Errorf("%s: %q, want %q", in, got, want)
		}
	}
}
