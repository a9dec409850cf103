package qmpschema

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Limits of the QMP input parser. A message over MaxMessageSize or nested
// deeper than maxNesting is answered with a parse error and skipped.
const (
	MaxMessageSize = 8 << 20
	maxNesting     = 1024
	maxScalarToken = 4096
)

// ParseError is a malformed QMP input message; the connection survives it.
// ParseError is a plain value: safe to copy and to read from many
// goroutines; do not modify one another goroutine uses.
type ParseError struct{ Msg string }

func (e *ParseError) Error() string { return "JSON parse error, " + e.Msg }

// jsonStream splits a byte stream into JSON values the way QEMU's JSON
// streamer does: no newline is needed between messages, whitespace is
// ignored, strings may use single quotes (a QEMU extension; they are
// rewritten to standard JSON), and after a syntax error the stream
// resynchronizes and continues. Not safe for concurrent use.
type jsonStream struct {
	r   *bufio.Reader
	buf []byte
}

func newJSONStream(r io.Reader) *jsonStream {
	return &jsonStream{r: bufio.NewReaderSize(r, 64<<10)}
}

func isDelim(c byte) bool {
	switch c {
	case ' ', '\t', '\r', '\n', '{', '}', '[', ']', ',', ':', '"', '\'':
		return true
	}
	return false
}

// Next returns the next message as standard JSON text, or a *ParseError
// for malformed input (call Next again to continue), or the reader's error
// (io.EOF at a clean end).
func (s *jsonStream) Next() ([]byte, error) {
	for {
		c, err := s.r.ReadByte()
		if err != nil {
			return nil, err
		}
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			continue
		case c == '{' || c == '[':
			return s.compound(c)
		case c == '"' || c == '\'':
			s.buf = s.buf[:0]
			if err := s.str(c, false); err != nil {
				return nil, err
			}
			return s.buf, nil
		case c == '}' || c == ']' || c == ',' || c == ':':
			return nil, &ParseError{Msg: "expecting value"}
		default:
			return s.scalar(c)
		}
	}
}

// scalar reads a bare token (number or keyword) up to a delimiter.
func (s *jsonStream) scalar(first byte) ([]byte, error) {
	tok := []byte{first}
	for {
		c, err := s.r.ReadByte()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if isDelim(c) {
			_ = s.r.UnreadByte()
			break
		}
		if len(tok) < maxScalarToken {
			tok = append(tok, c)
		}
	}
	var v any
	if json.Unmarshal(tok, &v) == nil {
		return tok, nil
	}
	return nil, &ParseError{Msg: fmt.Sprintf("invalid keyword '%s'", strings.ToValidUTF8(string(tok[:min(len(tok), 64)]), "?"))}
}

// compound reads an object or array whose opening byte was open.
func (s *jsonStream) compound(open byte) ([]byte, error) {
	s.buf = append(s.buf[:0], open)
	depth := 1
	var perr *ParseError
	for depth > 0 {
		c, err := s.r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		switch c {
		case '"', '\'':
			if err := s.str(c, perr != nil); err != nil {
				return nil, err
			}
			continue
		case '{', '[':
			depth++
			if depth > maxNesting && perr == nil {
				perr = &ParseError{Msg: "nesting too deep"}
			}
		case '}', ']':
			depth--
		}
		if perr == nil {
			s.buf = append(s.buf, c)
			if len(s.buf) > MaxMessageSize {
				perr = &ParseError{Msg: "message too large"}
			}
		}
	}
	if perr != nil {
		s.buf = s.buf[:0]
		return nil, perr
	}
	return s.buf, nil
}

// str copies a string whose opening quote q was read, rewriting a
// single-quoted string to a double-quoted one. With discard set it only
// skips the string.
func (s *jsonStream) str(q byte, discard bool) error {
	emit := func(b ...byte) {
		if !discard && len(s.buf) <= MaxMessageSize {
			s.buf = append(s.buf, b...)
		}
	}
	emit('"')
	for {
		c, err := s.r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		switch {
		case c == q:
			emit('"')
			return nil
		case c == '\\':
			e, err := s.r.ReadByte()
			if err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
			if e == '\'' {
				emit('\'')
			} else {
				emit('\\', e)
			}
		case c == '"': // only inside a single-quoted string
			emit('\\', '"')
		default:
			emit(c)
		}
	}
}

// decodeValue parses one message into a generic tree: map[string]any,
// []any, string, json.Number, bool or nil. Like QEMU it refuses duplicate
// keys.
func decodeValue(msg []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(msg))
	d.UseNumber()
	v, err := decodeTree(d)
	if err == nil && len(bytes.TrimLeft(msg[d.InputOffset():], " \t\r\n")) != 0 {
		err = &ParseError{Msg: "trailing data"}
	}
	if err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			return nil, pe
		}
		return nil, &ParseError{Msg: err.Error()}
	}
	return v, nil
}

func decodeTree(d *json.Decoder) (any, error) {
	tok, err := d.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			m := map[string]any{}
			for d.More() {
				kt, err := d.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				if _, dup := m[k]; dup {
					return nil, &ParseError{Msg: "duplicate key"}
				}
				if m[k], err = decodeTree(d); err != nil {
					return nil, err
				}
			}
			_, err := d.Token() // '}'
			return m, err
		case '[':
			l := []any{}
			for d.More() {
				v, err := decodeTree(d)
				if err != nil {
					return nil, err
				}
				l = append(l, v)
			}
			_, err := d.Token() // ']'
			return l, err
		}
		return nil, &ParseError{Msg: "unexpected " + t.String()}
	}
	return tok, nil
}
