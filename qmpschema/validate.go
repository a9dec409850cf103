package qmpschema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// intRange gives the bounds and QEMU's C type name of the sized builtins.
var intRange = map[string]struct {
	min, max int64
	umax     uint64
	cname    string
}{
	"int8":   {math.MinInt8, math.MaxInt8, 0, "int8_t"},
	"int16":  {math.MinInt16, math.MaxInt16, 0, "int16_t"},
	"int32":  {math.MinInt32, math.MaxInt32, 0, "int32_t"},
	"uint8":  {0, 0, math.MaxUint8, "uint8_t"},
	"uint16": {0, 0, math.MaxUint16, "uint16_t"},
	"uint32": {0, 0, math.MaxUint32, "uint32_t"},
	"uint64": {0, 0, math.MaxUint64, "uint64"},
	"size":   {0, 0, math.MaxUint64, "size"},
}

// CheckArguments checks a decoded JSON value (map[string]any, []any,
// string, json.Number, bool, nil — as produced by a json.Decoder with
// UseNumber) against the schema type typ the way QEMU's input visitor
// does, and returns a *Error of class GenericError with QEMU's message for
// the first problem: a missing member ("Parameter 'x' is missing"), an
// unknown one ("Parameter 'x' is unexpected"), a wrong JSON type ("Invalid
// parameter type for 'x', expected: integer"), a value an enum does not
// accept, or an integer out of range. Nested members are named with dots
// and list indexes ("file.filename", "children[1].filename"), with QEMU
// 7.2's quirks kept so replies match qemu-storage-daemon's byte for byte:
// enum errors name only the member ("Parameter 'driver' does not accept
// value 'x'" even inside "file"), an alternate that is itself a list
// element is called 'null', and unsigned integers given a non-number say
// "Parameter 'x' expects uint64". Of several unknown members the first in
// sorted order is reported (QEMU's choice depends on its hash table).
// Deliberate difference: negative values for uint64 members are refused
// ("expects uint64") where QEMU wraps them around.
func CheckArguments(typ string, v any) error {
	return check(typ, v, "")
}

// CheckJSON parses data (QEMU's JSON dialect: single-quoted strings
// allowed, duplicate keys refused) and checks it against typ like
// CheckArguments. Parse errors are *Error with "JSON parse error, ...".
func CheckJSON(typ string, data []byte) error {
	st := newJSONStream(bytes.NewReader(data))
	msg, err := st.Next()
	if err == nil {
		if _, err2 := st.Next(); err2 != io.EOF {
			err = &ParseError{Msg: "trailing data"}
		}
	}
	var v any
	if err == nil {
		v, err = decodeValue(msg)
	}
	if err != nil {
		var pe *ParseError
		if !errors.As(err, &pe) {
			pe = &ParseError{Msg: err.Error()}
		}
		return Errorf(ErrorClassGenericError, "%s", pe.Error())
	}
	return CheckArguments(typ, v)
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func where(path string) string {
	if path == "" {
		return "null" // QEMU's name for the top-level value
	}
	return path
}

// lastName is the member name at the end of path ("null" for a list
// element, as QEMU prints it).
func lastName(path string) string {
	if path == "" || strings.HasSuffix(path, "]") {
		return "null"
	}
	return path[strings.LastIndexByte(path, '.')+1:]
}

func typeErr(path, expected string) error {
	return Errorf(ErrorClassGenericError, "Invalid parameter type for '%s', expected: %s", where(path), expected)
}

func check(typ string, v any, path string) error {
	if strings.HasPrefix(typ, "[") && strings.HasSuffix(typ, "]") {
		list, ok := v.([]any)
		if !ok {
			return typeErr(path, "array")
		}
		elem := typ[1 : len(typ)-1]
		for i, x := range list {
			if err := check(elem, x, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	}
	switch typ {
	case "str":
		if _, ok := v.(string); !ok {
			return typeErr(path, "string")
		}
		return nil
	case "bool":
		if _, ok := v.(bool); !ok {
			return typeErr(path, "boolean")
		}
		return nil
	case "number":
		if _, ok := v.(json.Number); !ok {
			return typeErr(path, "number")
		}
		return nil
	case "any":
		return nil
	case "null":
		if v != nil {
			return typeErr(path, "null")
		}
		return nil
	case "int", "int64", "int8", "int16", "int32", "uint8", "uint16", "uint32", "uint64", "size":
		return checkInt(typ, v, path)
	}
	e, ok := lookupTable[typ]
	if !ok {
		return Errorf(ErrorClassGenericError, "schema type '%s' of '%s' is unknown", typ, where(path))
	}
	switch e.Kind {
	case KindEnum:
		s, ok := v.(string)
		if !ok {
			return typeErr(path, "string")
		}
		for _, val := range e.Values {
			if val == s {
				return nil
			}
		}
		// QEMU names only the member itself here, not its full path.
		return Errorf(ErrorClassGenericError, "Parameter '%s' does not accept value '%s'", lastName(path), s)
	case KindStruct:
		obj, ok := v.(map[string]any)
		if !ok {
			return typeErr(path, "object")
		}
		seen := map[string]bool{}
		if err := checkMembers(e, obj, path, seen); err != nil {
			return err
		}
		return checkUnexpected(obj, path, seen)
	case KindUnion:
		obj, ok := v.(map[string]any)
		if !ok {
			return typeErr(path, "object")
		}
		seen := map[string]bool{}
		if e.Discriminator == "" {
			seen["type"], seen["data"] = true, true
			t, ok := obj["type"]
			if !ok {
				return Errorf(ErrorClassGenericError, "Parameter '%s' is missing", join(path, "type"))
			}
			if err := check(e.Name+"Kind", t, join(path, "type")); err != nil {
				return err
			}
			d, ok := obj["data"]
			if !ok {
				return Errorf(ErrorClassGenericError, "Parameter '%s' is missing", join(path, "data"))
			}
			for _, vr := range e.Variants {
				if vr.Name == t {
					if err := check(vr.Type, d, join(path, "data")); err != nil {
						return err
					}
				}
			}
			return checkUnexpected(obj, path, seen)
		}
		base := lookupTable[e.Base]
		if err := checkMembers(base, obj, path, seen); err != nil {
			return err
		}
		disc, _ := obj[e.Discriminator].(string)
		for _, vr := range e.Variants {
			if vr.Name == disc {
				if err := checkMembers(lookupTable[vr.Type], obj, path, seen); err != nil {
					return err
				}
			}
		}
		return checkUnexpected(obj, path, seen)
	case KindAlternate:
		kind := jsonKindOfValue(v)
		for _, vr := range e.Variants {
			if altKind(vr.Type) == kind {
				return check(vr.Type, v, path)
			}
		}
		if strings.HasSuffix(path, "]") {
			path = "" // QEMU says 'null' for an alternate that is a list element
		}
		return typeErr(path, e.Name)
	}
	return Errorf(ErrorClassGenericError, "'%s' is not a data type", typ)
}

// checkMembers checks the members of struct e (bases first) in obj.
func checkMembers(e *Entity, obj map[string]any, path string, seen map[string]bool) error {
	if e == nil {
		return nil
	}
	if e.Base != "" {
		if err := checkMembers(lookupTable[e.Base], obj, path, seen); err != nil {
			return err
		}
	}
	for _, m := range e.Members {
		seen[m.Name] = true
		val, ok := obj[m.Name]
		if !ok {
			if m.Optional {
				continue
			}
			return Errorf(ErrorClassGenericError, "Parameter '%s' is missing", join(path, m.Name))
		}
		if err := check(m.Type, val, join(path, m.Name)); err != nil {
			return err
		}
	}
	return nil
}

func checkUnexpected(obj map[string]any, path string, seen map[string]bool) error {
	var extra []string
	for k := range obj {
		if !seen[k] {
			extra = append(extra, k)
		}
	}
	if len(extra) == 0 {
		return nil
	}
	sort.Strings(extra)
	return Errorf(ErrorClassGenericError, "Parameter '%s' is unexpected", join(path, extra[0]))
}

func checkInt(typ string, v any, path string) error {
	n, ok := v.(json.Number)
	signed := typ == "int" || typ == "int64" || typ == "int8" || typ == "int16" || typ == "int32"
	if !ok {
		if !signed {
			// QEMU's unsigned visitor says this for any non-number.
			return Errorf(ErrorClassGenericError, "Parameter '%s' expects uint64", where(path))
		}
		return typeErr(path, "integer")
	}
	s := string(n)
	isInt := !strings.ContainsAny(s, ".eE")
	i, ierr := strconv.ParseInt(s, 10, 64)
	u, uerr := strconv.ParseUint(s, 10, 64)
	r, sized := intRange[typ]
	if signed {
		if !isInt || ierr != nil {
			return typeErr(path, "integer")
		}
		if sized && (i < r.min || i > r.max) {
			return Errorf(ErrorClassGenericError, "Parameter '%s' expects %s", where(path), r.cname)
		}
		return nil
	}
	if !isInt || (uerr != nil && ierr != nil) {
		return Errorf(ErrorClassGenericError, "Parameter '%s' expects uint64", where(path))
	}
	if uerr != nil || u > r.umax {
		// Negative values: QEMU wraps them for uint64; we refuse them.
		return Errorf(ErrorClassGenericError, "Parameter '%s' expects %s", where(path), r.cname)
	}
	return nil
}

func jsonKindOfValue(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "boolean"
	}
	return "null"
}

// altKind is the JSON kind an alternate branch of type t takes.
func altKind(t string) string {
	switch t {
	case "str":
		return "string"
	case "bool":
		return "boolean"
	case "null":
		return "null"
	case "number", "int", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "size":
		return "number"
	}
	if strings.HasPrefix(t, "[") {
		return "array"
	}
	if e, ok := lookupTable[t]; ok && e.Kind == KindEnum {
		return "string"
	}
	return "object"
}
