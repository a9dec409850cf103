package qmpschema

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
)

// conn is one client connection: a reader loop running commands in order
// and a writer goroutine draining the output queue.
type conn struct {
	s          *Server
	nc         net.Conn
	cancel     context.CancelFunc // ends the handlers' context
	negotiated atomic.Bool

	mu     sync.Mutex
	cond   sync.Cond
	queue  [][]byte
	done   bool // no more output will be queued
	broken bool // writing failed or the queue overflowed
}

// ServeConn speaks QMP on nc until the client disconnects, ctx ends or
// the server is closed, then closes nc. It returns nil when the client
// hung up, ErrServerClosed after Close, or the read error.
func (s *Server) ServeConn(ctx context.Context, nc net.Conn) error {
	s.init()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := &conn{s: s, nc: nc, cancel: cancel}
	c.cond.L = &c.mu
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		nc.Close()
		return ErrServerClosed
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	stop := context.AfterFunc(ctx, func() { nc.Close() })
	writerDone := make(chan struct{})
	go c.writer(writerDone)

	type greet struct {
		Version      VersionInfo `json:"version"`
		Capabilities []string    `json:"capabilities"`
	}
	greeting, _ := marshalWire(map[string]greet{"QMP": {s.version(), append([]string{}, s.Capabilities...)}})
	c.enqueue(append(greeting, '\n'))

	err := c.readLoop(ctx)

	s.mu.Lock()
	delete(s.conns, c)
	closed := s.closed
	s.mu.Unlock()
	c.mu.Lock()
	c.done = true
	c.cond.Broadcast()
	c.mu.Unlock()
	<-writerDone
	stop()
	nc.Close()
	if closed {
		return ErrServerClosed
	}
	return err
}

func (c *conn) readLoop(ctx context.Context) error {
	st := newJSONStream(c.nc)
	for {
		msg, err := st.Next()
		var pe *ParseError
		switch {
		case errors.As(err, &pe):
			c.reply(nil, nil, &Error{Class: ErrorClassGenericError, Desc: pe.Error()})
			continue
		case err != nil:
			if isHangup(err) {
				return nil
			}
			return err
		}
		c.handle(ctx, msg)
		if ctx.Err() != nil {
			return nil
		}
	}
}

func isHangup(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

func (c *conn) enqueue(msg []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken {
		return
	}
	max := c.s.MaxQueue
	if max <= 0 {
		max = DefaultMaxQueue
	}
	if len(c.queue) >= max {
		c.broken = true
		c.nc.Close()
		return
	}
	c.queue = append(c.queue, msg)
	c.cond.Signal()
}

func (c *conn) writer(done chan<- struct{}) {
	defer close(done)
	for {
		c.mu.Lock()
		for len(c.queue) == 0 && !c.done && !c.broken {
			c.cond.Wait()
		}
		if c.broken || len(c.queue) == 0 {
			c.mu.Unlock()
			return
		}
		batch := c.queue
		c.queue = nil
		c.mu.Unlock()
		for _, m := range batch {
			if _, err := c.nc.Write(m); err != nil {
				c.mu.Lock()
				c.broken = true
				c.queue = nil
				c.mu.Unlock()
				c.nc.Close()
				return
			}
		}
	}
}

// reply queues a success ({"return": ret, "id": id}) or error
// ({"id": id, "error": {...}}) message. id is nil when the request had none.
func (c *conn) reply(id json.RawMessage, ret []byte, qerr *Error) {
	var b bytes.Buffer
	if qerr != nil {
		b.WriteByte('{')
		if id != nil {
			b.WriteString(`"id": `)
			b.Write(id)
			b.WriteString(", ")
		}
		desc, _ := marshalWire(qerr.Desc)
		class, _ := marshalWire(string(qerr.Class))
		fmt.Fprintf(&b, `"error": {"class": %s, "desc": %s}}`, class, desc)
	} else {
		b.WriteString(`{"return": `)
		b.Write(ret)
		if id != nil {
			b.WriteString(`, "id": `)
			b.Write(id)
		}
		b.WriteByte('}')
	}
	b.WriteByte('\n')
	c.enqueue(b.Bytes())
}

func genericf(format string, args ...any) *Error {
	return Errorf(ErrorClassGenericError, format, args...)
}

func (c *conn) handle(ctx context.Context, msg []byte) {
	v, err := decodeValue(msg)
	if err != nil {
		c.reply(nil, nil, asQMPError(err))
		return
	}
	obj, ok := v.(map[string]any)
	if !ok {
		c.reply(nil, nil, genericf("QMP input must be a JSON object"))
		return
	}
	var id json.RawMessage
	if raw, ok := obj["id"]; ok {
		id, _ = marshalWire(raw)
	}
	ret, qerr, silent := c.dispatch(ctx, obj)
	if silent && qerr == nil {
		return
	}
	c.reply(id, ret, qerr)
}

// dispatch runs one request and returns the encoded return value or the
// error; silent is set for commands without a success response.
func (c *conn) dispatch(ctx context.Context, obj map[string]any) (ret []byte, qerr *Error, silent bool) {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch k {
		case "execute":
			if _, ok := obj[k].(string); !ok {
				return nil, genericf("QMP input member 'execute' must be a string"), false
			}
		case "arguments":
			if _, ok := obj[k].(map[string]any); !ok {
				return nil, genericf("QMP input member 'arguments' must be an object"), false
			}
		case "id":
		default:
			return nil, genericf("QMP input member '%s' is unexpected", k), false
		}
	}
	name, ok := obj["execute"].(string)
	if !ok {
		return nil, genericf("QMP input lacks member 'execute'"), false
	}
	args, _ := obj["arguments"].(map[string]any)
	if args == nil {
		args = map[string]any{}
	}

	if name == "qmp_capabilities" {
		if c.negotiated.Load() {
			return nil, Errorf(ErrorClassCommandNotFound, "Capabilities negotiation is already complete, command ignored"), false
		}
		if err := c.s.checkCapabilities(args); err != nil {
			return nil, err, false
		}
		c.negotiated.Store(true)
		return []byte("{}"), nil, false
	}
	if !c.negotiated.Load() {
		return nil, Errorf(ErrorClassCommandNotFound, "Expecting capabilities negotiation with 'qmp_capabilities'"), false
	}
	cmd := c.s.lookup(name)
	if cmd == nil {
		return nil, Errorf(ErrorClassCommandNotFound, "The command %s has not been found", name), false
	}
	if cmd.schema {
		if _, wrapped := args["options"]; name == "blockdev-add" && !wrapped {
			// QEMU 2.9+ takes the options flat; 2.4 wraps them in
			// "options". Check the flat form with the flat names.
			if err := CheckArguments("BlockdevOptions", args); err != nil {
				return nil, asQMPError(err), false
			}
			args = map[string]any{"options": args}
		} else if cmd.argsType == "" {
			if err := checkUnexpected(args, "", map[string]bool{}); err != nil {
				return nil, asQMPError(err), false
			}
		} else if err := CheckArguments(cmd.argsType, args); err != nil {
			return nil, asQMPError(err), false
		}
	}
	raw, err := json.Marshal(args)
	if err != nil {
		return nil, genericf("%v", err), false
	}
	out, err := callSafely(ctx, cmd, raw)
	if err != nil {
		return nil, asQMPError(err), false
	}
	if !cmd.successResponse {
		return nil, nil, true
	}
	b, err := encodeReturn(out)
	if err != nil {
		return nil, genericf("encoding the reply of %s: %v", name, err), false
	}
	return b, nil, false
}

// encodeReturn encodes a handler's result; a nil slice becomes [].
func encodeReturn(v any) ([]byte, error) {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Slice && rv.IsNil() {
		return []byte("[]"), nil
	}
	return marshalWire(v)
}

// checkCapabilities checks qmp_capabilities' optional "enable" list
// against the advertised capabilities.
func (s *Server) checkCapabilities(args map[string]any) *Error {
	for k := range args {
		if k != "enable" {
			return genericf("Parameter '%s' is unexpected", k)
		}
	}
	en, ok := args["enable"]
	if !ok {
		return nil
	}
	list, ok := en.([]any)
	if !ok {
		return genericf("Invalid parameter type for 'enable', expected: array")
	}
	for i, x := range list {
		name, ok := x.(string)
		if !ok {
			return genericf("Invalid parameter type for 'enable[%d]', expected: string", i)
		}
		found := false
		for _, c := range s.Capabilities {
			found = found || c == name
		}
		if !found {
			return genericf("Capability '%s' not available", name)
		}
	}
	return nil
}

// callSafely runs a handler, turning a panic into a GenericError so that
// one faulty handler cannot take the whole server down.
func callSafely(ctx context.Context, cmd *command, raw []byte) (out any, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, genericf("internal error in %s: %v", cmd.name, p)
		}
	}()
	return cmd.call(ctx, raw)
}
