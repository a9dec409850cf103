package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/blocklayer/blocklayer/qmpschema"
)

type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialWait(t *testing.T, path string) *client {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return &client{t: t, c: c, r: bufio.NewReader(c)}
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial %s: %v", path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := c.c.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) recv() map[string]any {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		c.t.Fatalf("%q: %v", line, err)
	}
	return m
}

func errClass(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	s, _ := e["class"].(string)
	return s
}

// exercise runs the protocol checks every blockd must pass.
func exercise(t *testing.T, c *client) {
	g := c.recv()
	if _, ok := g["QMP"].(map[string]any); !ok {
		t.Fatalf("greeting %v", g)
	}
	c.send(`{"execute":"query-version"}`)
	if m := c.recv(); errClass(m) != "CommandNotFound" {
		t.Errorf("before negotiation: %v", m)
	}
	c.send(`{"execute":"qmp_capabilities"}`)
	if m := c.recv(); m["return"] == nil {
		t.Fatalf("negotiation: %v", m)
	}
	c.send(`{"execute":"query-version","id":"v"}`)
	if m := c.recv(); m["id"] != "v" || m["return"].(map[string]any)["qemu"] == nil {
		t.Errorf("query-version: %v", m)
	}
	c.send(`{"execute":"query-commands"}`)
	if m := c.recv(); len(m["return"].([]any)) < 3 {
		t.Errorf("query-commands: %v", m)
	}
	c.send(`{"execute":"nope"}`)
	if m := c.recv(); errClass(m) != "CommandNotFound" {
		t.Errorf("unknown command: %v", m)
	}
	c.send(`{"execute":"query-version",,}`)
	if m := c.recv(); errClass(m) != "GenericError" {
		t.Errorf("malformed: %v", m)
	}
	c.send(`{"execute":"query-version"}`)
	if m := c.recv(); m["return"] == nil {
		t.Errorf("after malformed input: %v", m)
	}
}

func TestRunInProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qmp.sock")
	srv := &qmpschema.Server{}
	if err := qmpschema.Register(srv, "block-job-pause", func(_ context.Context, a *qmpschema.BlockJobPauseArgs) (qmpschema.Empty, error) {
		return qmpschema.Empty{}, srv.Emit(qmpschema.BlockJobErrorEvent{Device: a.Device, Operation: qmpschema.IoOperationTypeRead, Action: qmpschema.BlockErrorActionStop})
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, path, srv) }()
	c := dialWait(t, path)
	exercise(t, c)
	c.send(`{"execute":"block-job-pause","arguments":{"device":"j"}}`)
	if m := c.recv(); m["event"] != "BLOCK_JOB_ERROR" {
		t.Errorf("event: %v", m)
	}
	if m := c.recv(); m["return"] == nil {
		t.Errorf("reply: %v", m)
	}
	if err := run(context.Background(), path, &qmpschema.Server{}); err == nil {
		t.Error("second daemon on the same socket started")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
}

// buildBlockd compiles the daemon into a temp dir.
func buildBlockd(t *testing.T) string {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	bin := filepath.Join(t.TempDir(), "blockd")
	if out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func startBlockd(t *testing.T, bin, path string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "--qmp", path)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd
}

func stopBlockd(t *testing.T, cmd *exec.Cmd, path string) {
	t.Helper()
	cmd.Process.Signal(syscall.SIGTERM)
	errc := make(chan error, 1)
	go func() { errc <- cmd.Wait() }()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("blockd exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("blockd did not stop on SIGTERM")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
}

func TestBlockdBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBlockd(t)
	if err := exec.Command(bin).Run(); err == nil {
		t.Error("blockd without --qmp succeeded")
	}
	path := filepath.Join(t.TempDir(), "qmp.sock")
	cmd := startBlockd(t, bin, path)
	c := dialWait(t, path)
	exercise(t, c)
	c2 := dialWait(t, path)
	c2.recv()
	stopBlockd(t, cmd, path)
}
