package qmpschema

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// startQSD runs qemu-storage-daemon with a QMP monitor on a Unix socket.
func startQSD(t testing.TB) string {
	bin := qemutest.Require(t, "qemu-storage-daemon")
	path := filepath.Join(t.TempDir(), "qsd.sock")
	cmd := exec.Command(bin, "--chardev", "socket,path="+path+",server=on,wait=off,id=m0", "--monitor", "chardev=m0")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("qemu-storage-daemon did not open its socket")
		}
	}
	return path
}

type peer struct {
	c net.Conn
	r *bufio.Reader
}

func openPeer(t *testing.T, path string) *peer {
	t.Helper()
	var c net.Conn
	var err error
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err = net.Dial("unix", path); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{c: c, r: bufio.NewReader(c)}
	p.read(t) // greeting
	return p
}

func (p *peer) read(t *testing.T) map[string]any {
	t.Helper()
	p.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	line, err := p.r.ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	return m
}

func (p *peer) ask(t *testing.T, in string) map[string]any {
	t.Helper()
	if _, err := p.c.Write([]byte(in)); err != nil {
		t.Fatal(err)
	}
	return p.read(t)
}

// TestDifferentialQSD sends the same inputs to qemu-storage-daemon and to
// our server and compares the error replies (class, text, id). The inputs
// are those where the 2.4 schema and QEMU 7.2's agree.
func TestDifferentialQSD(t *testing.T) {
	qsd := startQSD(t)
	s := &Server{}
	notNow := func() error { return errors.New("not implemented in this test") }
	must(Register(s, "block-dirty-bitmap-add", func(context.Context, *BlockDirtyBitmapAdd) (Empty, error) { return Empty{}, notNow() }))
	must(Register(s, "blockdev-add", func(context.Context, *BlockdevAddArgs) (Empty, error) { return Empty{}, notNow() }))
	ours := startServer(t, s)

	compare := func(t *testing.T, a, b map[string]any, in string) {
		t.Helper()
		if a["error"] == nil || !reflect.DeepEqual(a["error"], b["error"]) || !reflect.DeepEqual(a["id"], b["id"]) {
			t.Errorf("%s\n qemu: %v\n ours: %v", in, a, b)
		}
	}

	// Before negotiation (QEMU's monitor takes one client at a time).
	q, o := openPeer(t, qsd), openPeer(t, ours)
	for _, in := range []string{`{"execute": "query-version", "id": 1}`, `{"execute": "nope"}`} {
		compare(t, q.ask(t, in), o.ask(t, in), in)
	}
	q.ask(t, `{"execute": "qmp_capabilities"}`)
	o.ask(t, `{"execute": "qmp_capabilities"}`)

	inputs := []string{
		`{"execute": "qmp_capabilities"}`,
		`{"execute": "no-such-command", "id": [1, {"a": null}]}`,
		`{"execute": "query-version", "foo": 1}`,
		`[1, 2]`, `42 `, `"str"`,
		`{"arguments": {}}`,
		`{"execute": 5}`,
		`{"execute": "query-version", "arguments": null}`,
		`{"execute": "query-version", "arguments": []}`,
		`{"execute": "query-version", "arguments": {"x": 1}, "id": "i"}`,
		`garbage `,
		`} `,
		`{"execute": "block-dirty-bitmap-add"}`,
		`{"execute": "block-dirty-bitmap-add", "arguments": {"node": "a"}}`,
		`{"execute": "block-dirty-bitmap-add", "arguments": {"node": 1, "name": "b"}}`,
		`{"execute": "block-dirty-bitmap-add", "arguments": {"node": "a", "name": "b", "zz": 1}}`,
		`{"execute": "block-dirty-bitmap-add", "arguments": {"node": "a", "name": "b", "granularity": -1}}`,
		`{"execute": "block-dirty-bitmap-add", "arguments": {"node": "a", "name": "b", "granularity": 99999999999}}`,
		`{"execute": "block-dirty-bitmap-add", "arguments": {"node": "a", "name": "b", "granularity": 1.5}}`,
		`{"execute": "block-dirty-bitmap-add", "arguments": {"node": "a", "name": "b", "granularity": "x"}}`,
		`{"execute": "blockdev-add", "arguments": {"driver": "bogus", "node-name": "x"}}`,
		`{"execute": "blockdev-add", "arguments": {"node-name": "x"}}`,
		`{"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "x"}}`,
		`{"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "x", "file": {"driver": "file"}}}`,
		`{"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "x", "file": {"driver": "file", "filename": "/x", "zz": 1}}}`,
		`{"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "x", "file": 5}}`,
		`{"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "x", "file": "n", "cache": {"direct": 1}}}`,
		`{"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "x", "file": "n", "overlap-check": 5}}`,
		`{"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "x", "file": "n", "overlap-check": "bad"}}`,
		`{"execute": "blockdev-add", "arguments": {"driver": "quorum", "node-name": "x", "vote-threshold": 1, "children": ["a", {"driver": "file"}]}}`,
		`{"execute": "blockdev-add", "arguments": {"driver": "raw", "node-name": "x", "file": "n", "read-only": "yes"}}`,
		`{"execute": "blockdev-add", "arguments": {"driver": 5, "node-name": "x"}}`,
		`{"execute": "blockdev-add", "arguments": {"driver": "raw", "node-name": "x", "file": "n", "cache": "x"}}`,
		`{"execute": "blockdev-add", "arguments": {"driver": "raw", "node-name": "x", "file": "n", "node-name": null}}`,
		`{"execute": "blockdev-add", "arguments": {"driver": "raw", "node-name": "x", "file": {"driver": 5}}}`,
		`{"execute": "blockdev-add", "arguments": {"driver": "raw", "node-name": "x", "file": {"driver": "nope"}}}`,
		`{"execute": "blockdev-add", "arguments": {"driver": "quorum", "node-name": "x", "vote-threshold": 1, "children": {}}}`,
		`{"execute": "blockdev-add", "arguments": {"driver": "quorum", "node-name": "x", "vote-threshold": "1", "children": []}}`,
		`{"execute": "blockdev-add", "arguments": {"driver": "blkdebug", "node-name": "x", "image": "n", "inject-error": [{"event": "nope"}]}}`,
		`{"execute": "blockdev-add", "arguments": {"driver": "blkdebug", "node-name": "x", "image": "n", "inject-error": [{"event": "l1_update", "once": 1}]}}`,
		`{"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "x", "file": "n", "overlap-check": {"template": "all", "main-header": 1}}}`,
		`{"execute": "block-dirty-bitmap-add", "arguments": {"node": "a", "name": "b", "granularity": true}}`,
		`{"execute": "block-dirty-bitmap-add", "arguments": {"node": "a", "name": "b", "granularity": 18446744073709551615}}`,
		`{"execute": "block-dirty-bitmap-add", "arguments": {"node": "a", "name": null}}`,
		`{"execute": "blockdev-add", "arguments": {"driver": "blkdebug", "node-name": "x", "image": "n", "inject-error": [5]}}`,
		`{"execute": "blockdev-add", "arguments": {"driver": "blkdebug", "node-name": "x", "image": "n", "inject-error": [{"event": "l1_update", "state": "x"}]}}`,
		`{"execute": "blockdev-add", "arguments": {"driver": "quorum", "node-name": "x", "vote-threshold": 1, "children": ["a", {"driver": "file", "filename": "/x", "cache": {"direct": 5}}]}}`,
		`{"execute": "blockdev-add", "arguments": {"driver": "quorum", "node-name": "x", "vote-threshold": 1, "children": ["a", {"driver": "file", "filename": "/x", "aio": "bad"}]}}`,
		`{"execute": "blockdev-add", "arguments": {"driver": "quorum", "node-name": "x", "vote-threshold": 1, "children": [1]}}`,
		`{"a": 1, "a": 2}`,
		`{"execute": "x", "execute": "y"}`,
		`{"execute": "blockdev-add", "arguments": {"driver": "raw", "node-name": "x", "file": {"driver": "file", "filename": "/x", "zz": 1}, "yy": 2}}`,
	}
	for i, in := range inputs {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			compare(t, q.ask(t, in), o.ask(t, in), in)
		})
	}
}

// TestLiveQSDReplies asks a live qemu-storage-daemon for block node data
// and decodes the replies into the 2.4 types.
func TestLiveQSDReplies(t *testing.T) {
	qemuImg := qemutest.Require(t, "qemu-img")
	dir := t.TempDir()
	img := filepath.Join(dir, "a.qcow2")
	if out, err := exec.Command(qemuImg, "create", "-q", "-f", "qcow2", img, "64M").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	q := openPeer(t, startQSD(t))
	q.ask(t, `{"execute": "qmp_capabilities"}`)
	add := fmt.Sprintf(`{"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "q0", "file": {"driver": "file", "filename": %q}}}`, img)
	if m := q.ask(t, add); m["return"] == nil {
		t.Fatalf("blockdev-add: %v", m)
	}
	if m := q.ask(t, `{"execute": "block-dirty-bitmap-add", "arguments": {"node": "q0", "name": "bm0", "granularity": 65536}}`); m["return"] == nil {
		t.Fatalf("bitmap: %v", m)
	}
	for _, c := range []struct{ cmd, args string }{
		{"query-named-block-nodes", ""},
		{"query-blockstats", `{"query-nodes": true}`},
		{"query-block-jobs", ""},
		{"query-block", ""},
		{"query-version", ""},
	} {
		req := `{"execute": "` + c.cmd + `"`
		if c.args != "" {
			if err := CheckJSON(mustEntity(t, c.cmd).Data, []byte(c.args)); err != nil {
				t.Errorf("%s arguments: %v", c.cmd, err)
			}
			req += `, "arguments": ` + c.args
		}
		q.c.Write([]byte(req + "}"))
		q.c.SetReadDeadline(time.Now().Add(20 * time.Second))
		line, err := q.r.ReadBytes('\n')
		if err != nil {
			t.Fatal(err)
		}
		var reply struct {
			Return json.RawMessage `json:"return"`
		}
		if err := json.Unmarshal(line, &reply); err != nil || reply.Return == nil {
			t.Fatalf("%s: %s", c.cmd, line)
		}
		roundTrip(t, c.cmd, mustEntity(t, c.cmd).Returns, reply.Return)
		t.Logf("%s: %d bytes of reply round-tripped", c.cmd, len(reply.Return))
	}
}

func mustEntity(t *testing.T, name string) Entity {
	t.Helper()
	e, ok := Lookup(name)
	if !ok {
		t.Fatalf("no entity %s", name)
	}
	return e
}
