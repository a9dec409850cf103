package qmpschema

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"reflect"
	"sort"
	"sync"
	"time"
)

// ErrServerClosed is returned by Serve and ServeConn after Close.
var ErrServerClosed = errors.New("qmpschema: server closed")

// DefaultMaxQueue is the number of output messages a connection may have
// pending before the server drops it (a client that never reads).
const DefaultMaxQueue = 1 << 16

// Server speaks QMP (the QEMU Machine Protocol) to any number of clients.
//
// Each connection gets the greeting, must negotiate capabilities with
// qmp_capabilities (other commands are refused with CommandNotFound until
// then, as QEMU does), and then runs commands one at a time in arrival
// order. Arguments of schema commands are checked against the schema with
// QEMU's messages before the handler sees them. Events (Emit) go to every
// negotiated connection; an event emitted while a command runs reaches the
// client before that command's reply.
//
// Built in: qmp_capabilities, query-version and query-commands. Other
// commands exist once registered with Register; query-commands lists only
// registered commands.
//
// Input is parsed as a JSON stream the way QEMU does: no newline is needed
// between messages, single-quoted strings are accepted, duplicate keys are
// refused, and malformed input (or a message over MaxMessageSize bytes or
// nested deeper than 1024) is answered with a GenericError "JSON parse
// error, ..." while the connection stays usable. Every output message ends
// with a newline. blockdev-add accepts the 2.4 form {"options": {...}} and
// the flat form of QEMU 2.9+. A command whose schema sets
// 'success-response': false sends no reply on success.
//
// The zero Server is ready to use; set the fields before serving. A Server
// is safe for concurrent use: handlers of different connections run
// concurrently.
type Server struct {
	// Version is reported in the greeting and by query-version. Zero:
	// QEMU 2.4.0 (the schema's version), package "blocklayer".
	Version VersionInfo
	// Capabilities are advertised in the greeting ([] when nil, as QEMU
	// 2.4 does). The server implements none of QMP's optional capabilities,
	// so leave it nil unless a client insists.
	Capabilities []string
	// Now stamps events; nil means time.Now.
	Now func() time.Time
	// MaxQueue bounds pending output messages per connection; 0 means
	// DefaultMaxQueue.
	MaxQueue int

	once      sync.Once
	mu        sync.Mutex
	cmds      map[string]*command
	conns     map[*conn]struct{}
	listeners map[net.Listener]struct{}
	closed    bool
	wg        sync.WaitGroup
}

type command struct {
	name            string
	argsType        string // schema type checked before decoding ("" = none)
	schema          bool   // a command of the schema (arguments checked)
	successResponse bool
	call            func(ctx context.Context, args []byte) (any, error)
}

func (s *Server) init() {
	s.once.Do(func() {
		s.mu.Lock()
		if s.cmds == nil {
			s.cmds = map[string]*command{}
		}
		s.conns = map[*conn]struct{}{}
		s.listeners = map[net.Listener]struct{}{}
		s.mu.Unlock()
		must(register(s, "query-version", func(context.Context, *Empty) (VersionInfo, error) {
			return s.version(), nil
		}))
		must(register(s, "query-commands", func(context.Context, *Empty) ([]CommandInfo, error) {
			var out []CommandInfo
			for _, n := range s.Commands() {
				out = append(out, CommandInfo{Name: n})
			}
			return out, nil
		}))
	})
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func (s *Server) version() VersionInfo {
	if s.Version == (VersionInfo{}) {
		return VersionInfo{Qemu: VersionTriple{Major: 2, Minor: 4, Micro: 0}, Package: "blocklayer"}
	}
	return s.Version
}

// Commands returns the names of the commands clients can run, sorted,
// including qmp_capabilities.
func (s *Server) Commands() []string {
	s.init()
	s.mu.Lock()
	names := []string{"qmp_capabilities"}
	for n := range s.cmds {
		names = append(names, n)
	}
	s.mu.Unlock()
	sort.Strings(names)
	return names
}

// Register installs the handler of command name on s, replacing any
// previous one.
//
// For a command of the schema, Args must be the command's arguments type
// (NewValue(name); Empty when it takes none) and Ret its return type
// (Empty when it returns nothing, []T for a list); a mismatch is an error.
// Arguments are checked against the schema before h runs, so h sees only
// well-formed values. A name the schema does not define registers an
// extension command whose arguments are decoded strictly (unknown members
// refused) into Args.
//
// h runs on the goroutine serving the connection; ctx ends when the
// connection or server does. Return an *Error to choose the error class.
// A panic in h is answered with a GenericError and does not stop the server.
func Register[Args, Ret any](s *Server, name string, h func(ctx context.Context, args *Args) (Ret, error)) error {
	s.init()
	return register(s, name, h)
}

func register[Args, Ret any](s *Server, name string, h func(ctx context.Context, args *Args) (Ret, error)) error {
	if name == "qmp_capabilities" {
		return fmt.Errorf("qmpschema: %s is built in", name)
	}
	c := &command{name: name, successResponse: true}
	if e, ok := lookupTable[name]; ok {
		if e.Kind != KindCommand {
			return fmt.Errorf("qmpschema: %q is a %s, not a command", name, e.Kind)
		}
		want := reflect.TypeOf(constructors[name]()).Elem()
		if got := reflect.TypeFor[Args](); got != want {
			return fmt.Errorf("qmpschema: command %s takes %v, handler takes %v", name, want, got)
		}
		want, err := returnType(e.Returns)
		if err != nil {
			return err
		}
		if got := reflect.TypeFor[Ret](); got != want {
			return fmt.Errorf("qmpschema: command %s returns %v, handler returns %v", name, want, got)
		}
		c.schema, c.argsType, c.successResponse = true, e.Data, e.SuccessResponse
	}
	strict := !c.schema
	c.call = func(ctx context.Context, raw []byte) (any, error) {
		args := new(Args)
		d := json.NewDecoder(bytes.NewReader(raw))
		if strict {
			d.DisallowUnknownFields()
		}
		if err := d.Decode(args); err != nil {
			return nil, Errorf(ErrorClassGenericError, "%v", err)
		}
		return h(ctx, args)
	}
	s.mu.Lock()
	s.cmds[name] = c
	s.mu.Unlock()
	return nil
}

// Unregister removes a registered command.
func (s *Server) Unregister(name string) {
	s.init()
	s.mu.Lock()
	delete(s.cmds, name)
	s.mu.Unlock()
}

var builtinGoTypes = map[string]reflect.Type{
	"str": reflect.TypeFor[string](), "number": reflect.TypeFor[float64](), "bool": reflect.TypeFor[bool](),
	"any": reflect.TypeFor[json.RawMessage](), "int": reflect.TypeFor[int64](), "int8": reflect.TypeFor[int8](),
	"int16": reflect.TypeFor[int16](), "int32": reflect.TypeFor[int32](), "int64": reflect.TypeFor[int64](),
	"uint8": reflect.TypeFor[uint8](), "uint16": reflect.TypeFor[uint16](), "uint32": reflect.TypeFor[uint32](),
	"uint64": reflect.TypeFor[uint64](), "size": reflect.TypeFor[uint64](),
}

func returnType(t string) (reflect.Type, error) {
	if t == "" {
		return reflect.TypeFor[Empty](), nil
	}
	if len(t) > 2 && t[0] == '[' {
		e, err := returnType(t[1 : len(t)-1])
		if err != nil {
			return nil, err
		}
		return reflect.SliceOf(e), nil
	}
	if bt, ok := builtinGoTypes[t]; ok {
		return bt, nil
	}
	f, ok := constructors[t]
	if !ok {
		return nil, fmt.Errorf("qmpschema: unknown return type %q", t)
	}
	return reflect.TypeOf(f()).Elem(), nil
}

func (s *Server) lookup(name string) *command {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmds[name]
}

// Serve accepts connections on l and serves each on its own goroutine
// until ctx ends or Close is called; it then closes l and returns
// ErrServerClosed (or ctx's error). Connections already accepted keep
// running until Close or until ctx ends.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	s.init()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			switch {
			case closed:
				return ErrServerClosed
			case ctx.Err() != nil:
				return ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		go s.ServeConn(ctx, nc) //nolint:errcheck // per-connection errors end that connection only
	}
}

// Close stops all listeners and connections and waits for their
// goroutines (including running handlers) to finish.
func (s *Server) Close() error {
	s.init()
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.cancel()
		c.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// EmitEvent sends event name with data (any value encoding as a JSON
// object; nil or Empty for none, which omits "data") to every connection
// that has negotiated capabilities.
func (s *Server) EmitEvent(name string, data any) error {
	s.init()
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	t := now()
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"timestamp": {"seconds": %d, "microseconds": %d}, "event": `, t.Unix(), t.Nanosecond()/1000)
	nb, err := marshalWire(name)
	if err != nil {
		return err
	}
	b.Write(nb)
	switch data.(type) {
	case nil, Empty, *Empty:
	default:
		db, err := marshalWire(data)
		if err != nil {
			return fmt.Errorf("qmpschema: event %s: %w", name, err)
		}
		if jsonKindOf(db) != "object" {
			return fmt.Errorf("qmpschema: event %s: data must encode as an object", name)
		}
		b.WriteString(`, "data": `)
		b.Write(db)
	}
	b.WriteString("}\n")
	msg := b.Bytes()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.negotiated.Load() {
			c.enqueue(msg)
		}
	}
	return nil
}

// Emit sends a generated event (BlockJobCompletedEvent, ...) to every
// negotiated connection.
func (s *Server) Emit(ev Event) error {
	return s.EmitEvent(ev.EventName(), ev)
}
