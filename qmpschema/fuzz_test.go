package qmpschema

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
)

func fuzzSeeds(f *testing.F) {
	for _, l := range readTranscript(f) {
		if l.Dir == "client->server" {
			f.Add([]byte(l.JSON))
		}
	}
	for _, s := range []string{
		`{"execute":"query-version"}{"execute":"query-commands","id":1}`,
		`garbage {"execute": 'query-version'} }`,
		`{"execute":"blockdev-add","arguments":{"driver":"quorum","vote-threshold":1,"children":["a",{"driver":"file"}]}}`,
		`{"execute":"blockdev-add","arguments":{"options":{"driver":"qcow2","file":{"driver":"file","filename":"/x"},"overlap-check":{"template":"all"}}}}`,
		`[[[[[[[[[[]]]]]]]]]] 1e999 -0 "\u0000" '\'' {"a":1,"a":2}`,
		`{"execute":"block_resize","arguments":{"size":18446744073709551616}}`,
	} {
		f.Add([]byte(s))
	}
}

// FuzzJSONStream checks that the input splitter never panics or loops and
// that what it returns is standard JSON.
func FuzzJSONStream(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		st := newJSONStream(bytes.NewReader(in))
		for i := 0; ; i++ {
			if i > len(in)+1 {
				t.Fatal("more messages than input bytes")
			}
			msg, err := st.Next()
			var pe *ParseError
			if errors.As(err, &pe) {
				continue
			}
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF {
					t.Fatalf("read error %v", err)
				}
				return
			}
			if _, err := decodeValue(msg); err != nil {
				var pe *ParseError
				if !errors.As(err, &pe) {
					t.Fatalf("untyped decode error %v", err)
				}
			} else if !json.Valid(msg) {
				t.Fatalf("decoded but invalid JSON %q", msg)
			}
		}
	})
}

// FuzzServerInput feeds arbitrary bytes to a negotiated connection and
// checks that every output message is a newline-terminated JSON object
// that is a reply or an event.
func FuzzServerInput(f *testing.F) {
	fuzzSeeds(f)
	s := &Server{}
	must(Register(s, "blockdev-add", func(_ context.Context, a *BlockdevAddArgs) (Empty, error) {
		if _, err := json.Marshal(a); err != nil {
			return Empty{}, err
		}
		return Empty{}, s.EmitEvent("TEST", map[string]int{"x": 1})
	}))
	must(Register(s, "block_resize", func(_ context.Context, a *BlockResizeArgs) (Empty, error) { return Empty{}, nil }))
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := socketPair(t)
		done := make(chan error, 1)
		go func() { done <- s.ServeConn(context.Background(), a) }()
		go func() {
			b.Write([]byte(`{"execute":"qmp_capabilities"}`))
			b.Write(in)
			b.Write([]byte(" "))
			b.CloseWrite()
		}()
		r := bufio.NewReader(b)
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				if len(line) != 0 {
					t.Fatalf("unterminated output %q", line)
				}
				break
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal(line, &m); err != nil {
				t.Fatalf("output %q: %v", line, err)
			}
			_, isRet := m["return"]
			_, isErr := m["error"]
			_, isEv := m["event"]
			_, isQMP := m["QMP"]
			if !isRet && !isErr && !isEv && !isQMP {
				t.Fatalf("output %q is neither reply nor event", line)
			}
		}
		b.Close()
		if err := <-done; err != nil {
			t.Fatalf("ServeConn: %v", err)
		}
	})
}

// socketPair returns two connected Unix stream sockets (net.Pipe cannot
// half-close).
func socketPair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

// FuzzArgumentsDecode checks that the argument checker and the generated
// decoders agree: whatever CheckArguments accepts as BlockdevOptions
// decodes into the Go type and re-encodes without losing members.
func FuzzArgumentsDecode(f *testing.F) {
	for _, s := range []string{
		`{"driver": "qcow2", "node-name": "disk0", "cache": {"direct": true}, "file": {"driver": "file", "filename": "/a"}, "backing": "b", "overlap-check": "cached"}`,
		`{"driver": "quorum", "vote-threshold": 2, "children": ["a", {"driver": "raw", "file": "b"}], "read-pattern": "fifo"}`,
		`{"driver": "null-aio", "size": 1024, "latency-ns": 18446744073709551615}`,
		`{"driver": "blkdebug", "image": "x", "inject-error": [{"event": "l1_grow.alloc_table", "errno": 5}], "set-state": [{"event": "cow_read", "new_state": 2}]}`,
		`{"driver": "qcow2", "file": "f", "overlap-check": {"template": "all", "main-header": false}}`,
		`{"driver": "vvfat", "dir": "/", "fat-type": 16, "floppy": true, "label": "L", "rw": false}`,
		`{"driver": "archipelago", "volume": "v", "mport": 1, "segment": "s"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		v, err := decodeValue(in)
		if err != nil {
			return
		}
		if CheckArguments("BlockdevOptions", v) != nil {
			return
		}
		var o BlockdevOptions
		if err := json.Unmarshal(in, &o); err != nil {
			t.Fatalf("accepted by CheckArguments but not decodable: %v\n%s", err, in)
		}
		out, err := json.Marshal(o)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		back, err := decodeValue(out)
		if err != nil {
			t.Fatalf("re-encoded %q: %v", out, err)
		}
		if err := contains("", back, project("BlockdevOptions", v)); err != nil {
			t.Fatalf("%v\n in:  %s\n out: %s", err, in, out)
		}
		if err := CheckArguments("BlockdevOptions", back); err != nil {
			t.Fatalf("re-encoding not accepted: %v\n%s", err, out)
		}
	})
}
