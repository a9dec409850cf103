package qapi

import (
	"errors"
	"fmt"
	"strings"
)

// ErrSyntax is wrapped by every error Parse returns for malformed input.
var ErrSyntax = errors.New("qapi: syntax error")

// maxDepth bounds the nesting of objects and arrays so that hostile input
// cannot exhaust the stack.
const maxDepth = 64

// Object is a parsed QAPI dictionary. Keys keeps the order of the source,
// which matters for members, enum values and union branches.
// Object is a plain value: safe to copy and to read from many goroutines; do
// not modify one another goroutine uses.
type Object struct {
	Keys []string
	Vals map[string]Value
	Line int // line of the opening brace
}

// Get returns the value of key and whether it is present.
func (o *Object) Get(key string) (Value, bool) {
	v, ok := o.Vals[key]
	return v, ok
}

// Value is one of *Object, []Value, string or bool.
// Values are immutable once parsed: safe to read from many goroutines.
type Value any

// Expr is one top-level expression of a schema file.
// Expr is a plain value: safe to copy and to read from many goroutines; do
// not modify one another goroutine uses.
type Expr struct {
	Obj  *Object
	File string
	Line int
}

// SyntaxError describes malformed schema text.
// SyntaxError is a plain value: safe to copy and to read from many
// goroutines; do not modify one another goroutine uses.
type SyntaxError struct {
	File string
	Line int
	Col  int
	Msg  string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Unwrap lets errors.Is(err, ErrSyntax) succeed.
func (e *SyntaxError) Unwrap() error { return ErrSyntax }

type parser struct {
	file      string
	src       string
	pos       int
	line, col int
}

// Parse reads the top-level expressions of one QAPI schema file. QAPI's
// syntax is JSON with single-quoted strings, '#' comments to end of line,
// and only dictionaries at the top level.
func Parse(file string, src []byte) ([]Expr, error) {
	p := &parser{file: file, src: string(src), line: 1, col: 1}
	var out []Expr
	for {
		p.skipSpace()
		if p.pos >= len(p.src) {
			return out, nil
		}
		if p.src[p.pos] != '{' {
			return nil, p.errf("expected '{' at top level, found %q", p.src[p.pos])
		}
		line := p.line
		v, err := p.value(0)
		if err != nil {
			return nil, err
		}
		out = append(out, Expr{Obj: v.(*Object), File: file, Line: line})
	}
}

func (p *parser) errf(format string, args ...any) error {
	return &SyntaxError{File: p.file, Line: p.line, Col: p.col, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) advance() {
	if p.src[p.pos] == '\n' {
		p.line++
		p.col = 1
	} else {
		p.col++
	}
	p.pos++
}

func (p *parser) skipSpace() {
	for p.pos < len(p.src) {
		switch c := p.src[p.pos]; c {
		case ' ', '\t', '\n', '\r', '\f':
			p.advance()
		case '#':
			for p.pos < len(p.src) && p.src[p.pos] != '\n' {
				p.advance()
			}
		default:
			return
		}
	}
}

func (p *parser) value(depth int) (Value, error) {
	if depth > maxDepth {
		return nil, p.errf("nesting deeper than %d", maxDepth)
	}
	p.skipSpace()
	if p.pos >= len(p.src) {
		return nil, p.errf("unexpected end of input")
	}
	switch c := p.src[p.pos]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '\'':
		return p.str()
	case strings.HasPrefix(p.src[p.pos:], "true"):
		for range 4 {
			p.advance()
		}
		return true, nil
	case strings.HasPrefix(p.src[p.pos:], "false"):
		for range 5 {
			p.advance()
		}
		return false, nil
	default:
		return nil, p.errf("unexpected character %q (strings use single quotes)", c)
	}
}

func (p *parser) object(depth int) (Value, error) {
	o := &Object{Vals: map[string]Value{}, Line: p.line}
	p.advance() // '{'
	p.skipSpace()
	if p.pos < len(p.src) && p.src[p.pos] == '}' {
		p.advance()
		return o, nil
	}
	for {
		p.skipSpace()
		if p.pos >= len(p.src) || p.src[p.pos] != '\'' {
			return nil, p.errf("expected string key")
		}
		k, err := p.str()
		if err != nil {
			return nil, err
		}
		if _, dup := o.Vals[k]; dup {
			return nil, p.errf("duplicate key '%s'", k)
		}
		p.skipSpace()
		if p.pos >= len(p.src) || p.src[p.pos] != ':' {
			return nil, p.errf("expected ':' after key '%s'", k)
		}
		p.advance()
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		o.Keys = append(o.Keys, k)
		o.Vals[k] = v
		p.skipSpace()
		if p.pos >= len(p.src) {
			return nil, p.errf("unexpected end of input in dictionary")
		}
		switch p.src[p.pos] {
		case ',':
			p.advance()
		case '}':
			p.advance()
			return o, nil
		default:
			return nil, p.errf("expected ',' or '}' in dictionary")
		}
	}
}

func (p *parser) array(depth int) (Value, error) {
	p.advance() // '['
	a := []Value{}
	p.skipSpace()
	if p.pos < len(p.src) && p.src[p.pos] == ']' {
		p.advance()
		return a, nil
	}
	for {
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		p.skipSpace()
		if p.pos >= len(p.src) {
			return nil, p.errf("unexpected end of input in list")
		}
		switch p.src[p.pos] {
		case ',':
			p.advance()
		case ']':
			p.advance()
			return a, nil
		default:
			return nil, p.errf("expected ',' or ']' in list")
		}
	}
}

// str reads a single-quoted string. Like QAPI, it accepts the escapes \\,
// \' and \", and refuses control characters and unterminated strings.
func (p *parser) str() (string, error) {
	p.advance() // opening quote
	var b strings.Builder
	for {
		if p.pos >= len(p.src) {
			return "", p.errf("unterminated string")
		}
		c := p.src[p.pos]
		switch {
		case c == '\'':
			p.advance()
			return b.String(), nil
		case c == '\\':
			p.advance()
			if p.pos >= len(p.src) {
				return "", p.errf("unterminated string")
			}
			e := p.src[p.pos]
			if e != '\\' && e != '\'' && e != '"' {
				return "", p.errf("unknown escape \\%c", e)
			}
			b.WriteByte(e)
			p.advance()
		case c < 0x20:
			return "", p.errf("control character in string")
		default:
			b.WriteByte(c)
			p.advance()
		}
	}
}

// Strip returns src without comments and without the blank lines they
// leave behind: the definitions only, byte for byte as written otherwise.
// Comment markers inside strings are kept.
func Strip(src []byte) []byte {
	var out []string
	blank := true
	for _, line := range strings.Split(string(src), "\n") {
		line = strings.TrimRight(stripComment(line), " \t\r")
		if line == "" {
			if !blank {
				out = append(out, "")
			}
			blank = true
			continue
		}
		out = append(out, line)
		blank = false
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	if len(out) == 0 {
		return nil
	}
	return []byte(strings.Join(out, "\n") + "\n")
}

func stripComment(line string) string {
	inStr := false
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case inStr && c == '\\':
			i++
		case c == '\'':
			inStr = !inStr
		case !inStr && c == '#':
			return line[:i]
		}
	}
	return line
}
