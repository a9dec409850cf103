package qmpschema

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// startServer serves s on a Unix socket in a temp dir and returns its path.
func startServer(t testing.TB, s *Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qmp.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) && !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
		s.Close()
	})
	return path
}

type rawClient struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func dial(t testing.TB, path string) *rawClient {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, c: c, r: bufio.NewReader(c)}
}

// send writes s as is: no newline is added.
func (rc *rawClient) send(s string) {
	rc.t.Helper()
	if _, err := rc.c.Write([]byte(s)); err != nil {
		rc.t.Fatal(err)
	}
}

// recv reads one newline-terminated message.
func (rc *rawClient) recv() map[string]any {
	rc.t.Helper()
	rc.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	line, err := rc.r.ReadString('\n')
	if err != nil {
		rc.t.Fatalf("read: %v (partial %q)", err, line)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		rc.t.Fatalf("reply %q: %v", line, err)
	}
	return m
}

func (rc *rawClient) negotiate() {
	rc.t.Helper()
	rc.recv() // greeting
	rc.send(`{"execute": "qmp_capabilities"}`)
	if m := rc.recv(); m["return"] == nil {
		rc.t.Fatalf("negotiation: %v", m)
	}
}

func wantError(t testing.TB, m map[string]any, class, desc string) {
	t.Helper()
	e, ok := m["error"].(map[string]any)
	if !ok || e["class"] != class || (desc != "" && e["desc"] != desc) {
		t.Errorf("got %v, want error %s %q", m, class, desc)
	}
}

func TestServerProtocol(t *testing.T) {
	s := &Server{}
	rc := dial(t, startServer(t, s))

	g := rc.recv()
	qmp, _ := g["QMP"].(map[string]any)
	ver, _ := qmp["version"].(map[string]any)
	if caps, ok := qmp["capabilities"].([]any); !ok || len(caps) != 0 || ver["package"] != "blocklayer" {
		t.Fatalf("greeting %v", g)
	}
	if q := ver["qemu"].(map[string]any); q["major"] != 2.0 || q["minor"] != 4.0 || q["micro"] != 0.0 {
		t.Errorf("version %v", q)
	}

	rc.send(`{"execute": "query-version", "id": 7}`)
	m := rc.recv()
	wantError(t, m, "CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'")
	if m["id"] != 7.0 {
		t.Errorf("id not echoed: %v", m)
	}

	// Two messages in one write, no newline, single quotes (QEMU accepts them).
	rc.send(`{'execute': 'qmp_capabilities', 'id': {"k": ["x"]}}{"execute":"qmp_capabilities"}`)
	m = rc.recv()
	if r, ok := m["return"].(map[string]any); !ok || len(r) != 0 || fmt.Sprint(m["id"]) != "map[k:[x]]" {
		t.Errorf("negotiation reply %v", m)
	}
	wantError(t, rc.recv(), "CommandNotFound", "Capabilities negotiation is already complete, command ignored")

	rc.send(`{"execute": "query-version"}`)
	m = rc.recv()
	if r := m["return"].(map[string]any); r["package"] != "blocklayer" {
		t.Errorf("query-version %v", m)
	}

	rc.send(`{"execute": "query-commands"}`)
	var names []string
	for _, c := range rc.recv()["return"].([]any) {
		names = append(names, c.(map[string]any)["name"].(string))
	}
	if strings.Join(names, ",") != "qmp_capabilities,query-commands,query-version" {
		t.Errorf("query-commands %v", names)
	}

	for _, c := range []struct{ in, class, desc string }{
		{`{"execute": "no-such-command"}`, "CommandNotFound", "The command no-such-command has not been found"},
		{`{"execute": "block_resize", "arguments": {"device": "a", "size": 1}}`, "CommandNotFound", "The command block_resize has not been found"},
		{`garbage `, "GenericError", "JSON parse error, invalid keyword 'garbage'"},
		{`}`, "GenericError", "JSON parse error, expecting value"},
		{`{"execute": "query-version",}`, "GenericError", ""},
		{`[1, 2]`, "GenericError", "QMP input must be a JSON object"},
		{`42 `, "GenericError", "QMP input must be a JSON object"},
		{`"str"`, "GenericError", "QMP input must be a JSON object"},
		{`{"arguments": {}}`, "GenericError", "QMP input lacks member 'execute'"},
		{`{"execute": 5}`, "GenericError", "QMP input member 'execute' must be a string"},
		{`{"execute": "query-version", "foo": 1}`, "GenericError", "QMP input member 'foo' is unexpected"},
		{`{"execute": "query-version", "arguments": null}`, "GenericError", "QMP input member 'arguments' must be an object"},
		{`{"execute": "query-version", "arguments": {"x": 1}}`, "GenericError", "Parameter 'x' is unexpected"},
		{`{"execute": "query-version", "arguments": {"a": "` + strings.Repeat("\\u00e9", 3) + `"}}`, "GenericError", "Parameter 'a' is unexpected"},
	} {
		rc.send(c.in)
		wantError(t, rc.recv(), c.class, c.desc)
	}
	// The connection survived all of that.
	rc.send(`{"execute": "query-version", "id": "last"}`)
	if m := rc.recv(); m["id"] != "last" || m["return"] == nil {
		t.Errorf("after errors: %v", m)
	}
}

func TestEventsBeforeReply(t *testing.T) {
	s := &Server{Now: func() time.Time { return time.Unix(1700000000, 123456789) }}
	err := Register(s, "block-job-complete", func(ctx context.Context, a *BlockJobCompleteArgs) (Empty, error) {
		if err := s.Emit(BlockJobReadyEvent{Type: BlockJobTypeMirror, Device: a.Device, Len: 10, Offset: 10}); err != nil {
			return Empty{}, err
		}
		return Empty{}, s.Emit(BlockJobCompletedEvent{Type: BlockJobTypeMirror, Device: a.Device, Len: 10, Offset: 10})
	})
	if err != nil {
		t.Fatal(err)
	}
	path := startServer(t, s)
	rc := dial(t, path)
	rc.negotiate()
	idle := dial(t, path) // has not negotiated: gets no events
	idle.recv()

	rc.send(`{"execute": "block-job-complete", "arguments": {"device": "job0"}, "id": 1}`)
	ev := rc.recv()
	ts := ev["timestamp"].(map[string]any)
	if ev["event"] != "BLOCK_JOB_READY" || ts["seconds"] != 1700000000.0 || ts["microseconds"] != 123456.0 {
		t.Errorf("first event %v", ev)
	}
	if d := ev["data"].(map[string]any); d["device"] != "job0" || d["type"] != "mirror" || d["len"] != 10.0 {
		t.Errorf("event data %v", d)
	}
	if ev := rc.recv(); ev["event"] != "BLOCK_JOB_COMPLETED" {
		t.Errorf("second event %v", ev)
	}
	if m := rc.recv(); m["id"] != 1.0 || m["return"] == nil {
		t.Errorf("reply %v", m)
	}
	// An event without data omits "data".
	if err := s.EmitEvent("RESUME", nil); err != nil {
		t.Fatal(err)
	}
	if ev := rc.recv(); ev["event"] != "RESUME" || ev["data"] != nil {
		t.Errorf("data-less event %v", ev)
	}
	idle.send(`{"execute": "query-version"}`)
	wantError(t, idle.recv(), "CommandNotFound", "")
}

func TestRegister(t *testing.T) {
	s := &Server{}
	if err := Register(s, "block-job-pause", func(context.Context, *BlockJobResumeArgs) (Empty, error) { return Empty{}, nil }); err == nil {
		t.Error("wrong argument type accepted")
	}
	if err := Register(s, "query-block", func(context.Context, *Empty) (BlockInfo, error) { return BlockInfo{}, nil }); err == nil {
		t.Error("wrong return type accepted")
	}
	if err := Register(s, "BlockInfo", func(context.Context, *Empty) (Empty, error) { return Empty{}, nil }); err == nil {
		t.Error("a struct registered as a command")
	}
	if err := Register(s, "qmp_capabilities", func(context.Context, *Empty) (Empty, error) { return Empty{}, nil }); err == nil {
		t.Error("qmp_capabilities replaced")
	}
	var called atomic.Bool
	must(Register(s, "query-block", func(context.Context, *Empty) ([]BlockInfo, error) { called.Store(true); return nil, nil }))
	must(Register(s, "block_resize", func(_ context.Context, a *BlockResizeArgs) (Empty, error) {
		switch {
		case a.Device != nil && *a.Device == "missing":
			return Empty{}, Errorf(ErrorClassDeviceNotFound, "Device '%s' not found", *a.Device)
		case a.Size < 0:
			return Empty{}, errors.New("Parameter 'size' expects a >0 size")
		}
		return Empty{}, nil
	}))
	must(Register(s, "blockdev-add", func(_ context.Context, a *BlockdevAddArgs) (Empty, error) {
		if a.Options.Driver != BlockdevDriverRaw || a.Options.Raw == nil || a.Options.Raw.File.Reference == nil {
			return Empty{}, fmt.Errorf("bad decode %+v", a.Options)
		}
		return Empty{}, nil
	}))
	type extArgs struct {
		N int `json:"n"`
	}
	must(Register(s, "x-ext", func(_ context.Context, a *extArgs) (map[string]int, error) { return map[string]int{"n": a.N + 1}, nil }))

	rc := dial(t, startServer(t, s))
	rc.negotiate()
	rc.send(`{"execute": "query-block"}`)
	if m := rc.recv(); fmt.Sprint(m["return"]) != "[]" || !called.Load() {
		t.Errorf("nil list reply %v", m)
	}
	rc.send(`{"execute": "block_resize", "arguments": {"device": "missing", "size": 1}}`)
	wantError(t, rc.recv(), "DeviceNotFound", "Device 'missing' not found")
	rc.send(`{"execute": "block_resize", "arguments": {"size": -1}}`)
	wantError(t, rc.recv(), "GenericError", "Parameter 'size' expects a >0 size")
	rc.send(`{"execute": "block_resize", "arguments": {"size": "big"}}`)
	wantError(t, rc.recv(), "GenericError", "Invalid parameter type for 'size', expected: integer")
	rc.send(`{"execute": "blockdev-add", "arguments": {"options": {"driver": "raw", "file": "f"}}}`)
	if m := rc.recv(); m["return"] == nil {
		t.Errorf("2.4 blockdev-add: %v", m)
	}
	rc.send(`{"execute": "blockdev-add", "arguments": {"driver": "raw", "file": "f"}}`)
	if m := rc.recv(); m["return"] == nil {
		t.Errorf("flat blockdev-add: %v", m)
	}
	rc.send(`{"execute": "blockdev-add", "arguments": {"driver": "raw", "file": {"driver": "file"}}}`)
	wantError(t, rc.recv(), "GenericError", "Parameter 'file.filename' is missing")
	rc.send(`{"execute": "x-ext", "arguments": {"n": 41}}`)
	if m := rc.recv(); fmt.Sprint(m["return"]) != "map[n:42]" {
		t.Errorf("extension: %v", m)
	}
	rc.send(`{"execute": "x-ext", "arguments": {"m": 41}}`)
	wantError(t, rc.recv(), "GenericError", "")

	rc.send(`{"execute": "query-commands"}`)
	if got := fmt.Sprint(rc.recv()["return"]); !strings.Contains(got, "block_resize") || !strings.Contains(got, "x-ext") {
		t.Errorf("query-commands %v", got)
	}
	s.Unregister("x-ext")
	rc.send(`{"execute": "x-ext", "arguments": {"n": 41}}`)
	wantError(t, rc.recv(), "CommandNotFound", "")

	// Commands without a success response send nothing on success.
	s.mu.Lock()
	s.cmds["query-block"].successResponse = false
	s.mu.Unlock()
	rc.send(`{"execute": "query-block"}{"execute": "query-version", "id": 2}`)
	if m := rc.recv(); m["id"] != 2.0 {
		t.Errorf("silent command answered: %v", m)
	}
}

func TestManyClients(t *testing.T) {
	s := &Server{}
	var mu sync.Mutex
	count := 0
	must(Register(s, "block-job-set-speed", func(_ context.Context, a *BlockJobSetSpeedArgs) (Empty, error) {
		mu.Lock()
		count++
		mu.Unlock()
		return Empty{}, nil
	}))
	path := startServer(t, s)
	clients, per := 16, 40
	if testing.Short() {
		per = 10
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("unix", path)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			r := bufio.NewReader(c)
			r.ReadString('\n')
			var b strings.Builder
			b.WriteString(`{"execute":"qmp_capabilities"}`)
			for j := range per {
				fmt.Fprintf(&b, `{"execute":"block-job-set-speed","arguments":{"device":"c%d","speed":%d},"id":%d}`, i, j, j)
			}
			if _, err := c.Write([]byte(b.String())); err != nil {
				errs <- err
				return
			}
			r.ReadString('\n')
			for j := range per {
				line, err := r.ReadString('\n')
				if err != nil {
					errs <- err
					return
				}
				var m struct {
					ID int `json:"id"`
				}
				if json.Unmarshal([]byte(line), &m); m.ID != j {
					errs <- fmt.Errorf("client %d: reply %q out of order, want id %d", i, line, j)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if count != clients*per {
		t.Errorf("%d commands ran, want %d", count, clients*per)
	}
}

func TestSlowClientDropped(t *testing.T) {
	s := &Server{MaxQueue: 8}
	path := startServer(t, s)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	r.ReadString('\n')
	c.Write([]byte(`{"execute":"qmp_capabilities"}`))
	r.ReadString('\n')
	// The client stops reading; big events fill the socket buffer, then the
	// queue; the server drops the client instead of blocking Emit.
	big := map[string]string{"pad": strings.Repeat("x", 64<<10)}
	for range 200 {
		if err := s.EmitEvent("BIG", big); err != nil {
			t.Fatal(err)
		}
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	n := 0
	for {
		if _, err := r.ReadString('\n'); err != nil {
			break
		}
		n++
	}
	if n >= 200 {
		t.Errorf("all %d events delivered to a client that was over its queue", n)
	}
}

func TestCloseEndsConnections(t *testing.T) {
	s := &Server{}
	path := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background(), l) }()
	rc := dial(t, path)
	rc.negotiate()
	s.Close()
	if err := <-done; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Close: %v", err)
	}
	rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := rc.r.ReadString('\n'); err == nil {
		t.Error("connection still open after Close")
	}
	if err := s.ServeConn(context.Background(), rc.c); !errors.Is(err, ErrServerClosed) {
		t.Errorf("ServeConn after Close: %v", err)
	}
}

func TestServeConnPipe(t *testing.T) {
	s := &Server{}
	a, b := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- s.ServeConn(context.Background(), a) }()
	rc := &rawClient{t: t, c: b, r: bufio.NewReader(b)}
	rc.negotiate()
	rc.send(`{"execute":"query-version"}`)
	rc.recv()
	b.Close()
	if err := <-done; err != nil {
		t.Errorf("ServeConn after hang-up: %v", err)
	}
}

// TestTranscriptReplay replays the client side of the qemu-storage-daemon
// transcript against the server: every command gets exactly one reply,
// in order, and commands we have no handler for are CommandNotFound.
func TestTranscriptReplay(t *testing.T) {
	s := &Server{}
	path := startServer(t, s)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	r.ReadString('\n')
	for _, l := range readTranscript(t) {
		if l.Dir != "client->server" {
			continue
		}
		c.Write(l.JSON) // as go-qemu does: no newline
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		var req struct {
			Execute string `json:"execute"`
		}
		json.Unmarshal(l.JSON, &req)
		var m map[string]any
		json.Unmarshal([]byte(line), &m)
		switch req.Execute {
		case "qmp_capabilities", "query-version":
			if m["return"] == nil {
				t.Errorf("%s: %s", req.Execute, line)
			}
		default:
			wantError(t, m, "CommandNotFound", "The command "+req.Execute+" has not been found")
		}
	}
}

func TestCloseCancelsHandlers(t *testing.T) {
	s := &Server{}
	started := make(chan struct{})
	must(Register(s, "block-job-resume", func(ctx context.Context, a *BlockJobResumeArgs) (Empty, error) {
		close(started)
		<-ctx.Done()
		return Empty{}, ctx.Err()
	}))
	path := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(context.Background(), l)
	rc := dial(t, path)
	rc.negotiate()
	rc.send(`{"execute": "block-job-resume", "arguments": {"device": "j"}}`)
	<-started
	s.Close() // returns only once the handler has seen ctx end
}

func TestHandlerPanic(t *testing.T) {
	s := &Server{}
	must(Register(s, "block-job-pause", func(context.Context, *BlockJobPauseArgs) (Empty, error) { panic("boom") }))
	rc := dial(t, startServer(t, s))
	rc.negotiate()
	rc.send(`{"execute": "block-job-pause", "arguments": {"device": "j"}}`)
	wantError(t, rc.recv(), "GenericError", "internal error in block-job-pause: boom")
	rc.send(`{"execute": "query-version"}`)
	if m := rc.recv(); m["return"] == nil {
		t.Errorf("after panic: %v", m)
	}
}
