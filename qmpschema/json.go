package qmpschema

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// decodeEnum decodes a JSON string for enum typ.
func decodeEnum(b []byte, typ string) (string, error) {
	if k := jsonKindOf(b); k != "string" {
		return "", fmt.Errorf("%w: %s must be a JSON string, not %s", ErrInvalid, typ, k)
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return "", err
	}
	return s, nil
}

// unmarshalEnum is the UnmarshalJSON of every generated enum type E: it
// decodes a JSON string into *e, refusing values E does not list.
func unmarshalEnum[E interface {
	~string
	Valid() bool
}](b []byte, typ string, e *E) error {
	s, err := decodeEnum(b, typ)
	if err != nil {
		return err
	}
	if !E(s).Valid() {
		return &EnumError{Type: typ, Value: s}
	}
	*e = E(s)
	return nil
}

// jsonKindOf classifies an encoded JSON value by its first byte.
func jsonKindOf(b []byte) string {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

// mergeObjects appends the members of the JSON encoding of branch (an
// object) to the encoded object base.
func mergeObjects(base []byte, branch any) ([]byte, error) {
	b, err := json.Marshal(branch)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSpace(b)
	if len(b) < 2 || b[0] != '{' {
		return nil, fmt.Errorf("%w: union branch %T does not encode as an object", ErrInvalid, branch)
	}
	if len(b) == 2 {
		return base, nil
	}
	base = bytes.TrimSpace(base)
	if len(base) == 2 {
		return b, nil
	}
	out := make([]byte, 0, len(base)+len(b))
	out = append(out, base[:len(base)-1]...)
	out = append(out, ',')
	out = append(out, b[1:]...)
	return out, nil
}

// marshalWire encodes v for the wire like QEMU's JSON writer: no HTML
// escaping of <, > and & (json.Marshal's default), no trailing newline.
func marshalWire(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
