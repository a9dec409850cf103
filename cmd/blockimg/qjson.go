package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// QEMU prints JSON from its QObject dictionaries, whose iteration order is
// the order of a 512-bucket hash table (keys hashed with the TDB hash;
// within a bucket the newest key first). To print byte-identical output we
// keep members in insertion order (the schema's member order) and emit
// them in that bucket order.

type qnode struct {
	kind  byte // 'o' object, 'a' array, 's' string, 'n' number, 'b' bool, 'z' null
	str   string
	keys  []string
	vals  []*qnode
	items []*qnode
}

func qobj() *qnode { return &qnode{kind: 'o'} }

func (n *qnode) set(key string, v *qnode) *qnode {
	for i, k := range n.keys {
		if k == key {
			n.vals[i] = v
			return n
		}
	}
	n.keys = append(n.keys, key)
	n.vals = append(n.vals, v)
	return n
}

func (n *qnode) get(key string) *qnode {
	for i, k := range n.keys {
		if k == key {
			return n.vals[i]
		}
	}
	return nil
}

func qstr(s string) *qnode { return &qnode{kind: 's', str: s} }
func qint(v int64) *qnode  { return &qnode{kind: 'n', str: strconv.FormatInt(v, 10)} }
func qbool(b bool) *qnode {
	if b {
		return &qnode{kind: 'b', str: "true"}
	}
	return &qnode{kind: 'b', str: "false"}
}

// toQNode converts any value encoding/json can marshal into a qnode tree,
// keeping struct members in declaration order.
func toQNode(v any) (*qnode, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return decodeQNode(dec)
}

func decodeQNode(dec *json.Decoder) (*qnode, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n := qobj()
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				v, err := decodeQNode(dec)
				if err != nil {
					return nil, err
				}
				n.set(k, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return n, nil
		case '[':
			n := &qnode{kind: 'a'}
			for dec.More() {
				v, err := decodeQNode(dec)
				if err != nil {
					return nil, err
				}
				n.items = append(n.items, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return n, nil
		}
	case string:
		return qstr(t), nil
	case json.Number:
		return &qnode{kind: 'n', str: t.String()}, nil
	case bool:
		return qbool(t), nil
	case nil:
		return &qnode{kind: 'z'}, nil
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}

const qdictBuckets = 512

func tdbHash(s string) uint32 {
	v := uint32(0x238F13AF) * uint32(len(s))
	for i := 0; i < len(s); i++ {
		v += uint32(s[i]) << (uint(i) * 5 % 24)
	}
	return 1103515243*v + 12345
}

// qdictOrder returns the indexes of n's members in QDict iteration order.
func qdictOrder(n *qnode) []int {
	var buckets [qdictBuckets][]int
	for i, k := range n.keys {
		b := tdbHash(k) % qdictBuckets
		buckets[b] = append([]int{i}, buckets[b]...) // newest first
	}
	out := make([]int, 0, len(n.keys))
	for _, b := range buckets {
		out = append(out, b...)
	}
	return out
}

// writeQJSON prints n as qobject_to_json_pretty does, plus a newline.
func writeQJSON(w io.Writer, n *qnode) error {
	var buf bytes.Buffer
	qjsonTo(&buf, n, 0)
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

func qnewline(buf *bytes.Buffer, indent int) {
	buf.WriteByte('\n')
	for i := 0; i < indent; i++ {
		buf.WriteString("    ")
	}
}

func qjsonTo(buf *bytes.Buffer, n *qnode, indent int) {
	switch n.kind {
	case 'o':
		buf.WriteByte('{')
		sep := ""
		for _, i := range qdictOrder(n) {
			buf.WriteString(sep)
			qnewline(buf, indent+1)
			qjsonString(buf, n.keys[i])
			buf.WriteString(": ")
			qjsonTo(buf, n.vals[i], indent+1)
			sep = ","
		}
		qnewline(buf, indent)
		buf.WriteByte('}')
	case 'a':
		buf.WriteByte('[')
		sep := ""
		for _, it := range n.items {
			buf.WriteString(sep)
			qnewline(buf, indent+1)
			qjsonTo(buf, it, indent+1)
			sep = ","
		}
		qnewline(buf, indent)
		buf.WriteByte(']')
	case 's':
		qjsonString(buf, n.str)
	case 'z':
		buf.WriteString("null")
	default:
		buf.WriteString(n.str)
	}
}

// qjsonString quotes s as QEMU does: the usual escapes, \uXXXX (upper-case
// hex) for control characters and everything outside printable ASCII,
// surrogate pairs above U+FFFF, U+FFFD for invalid UTF-8.
func qjsonString(buf *bytes.Buffer, s string) {
	buf.WriteByte('"')
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		s = s[size:]
		switch r {
		case '"':
			buf.WriteString(`\"`)
		case '\\':
			buf.WriteString(`\\`)
		case '\b':
			buf.WriteString(`\b`)
		case '\f':
			buf.WriteString(`\f`)
		case '\n':
			buf.WriteString(`\n`)
		case '\r':
			buf.WriteString(`\r`)
		case '\t':
			buf.WriteString(`\t`)
		default:
			switch {
			case r >= 0x10000:
				r -= 0x10000
				fmt.Fprintf(buf, `\u%04X\u%04X`, 0xD800|(r>>10), 0xDC00|(r&0x3FF))
			case r < 0x20 || r >= 0x7F:
				fmt.Fprintf(buf, `\u%04X`, r)
			default:
				buf.WriteRune(r)
			}
		}
	}
	buf.WriteByte('"')
}
