// Drives our QMP server with github.com/digitalocean/go-qemu's qmp client,
// a client we did not write.

package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blocklayer/blocklayer/qmpschema"
	"github.com/digitalocean/go-qemu/qmp"
)

func connect(t *testing.T, path string) *qmp.SocketMonitor {
	t.Helper()
	var mon *qmp.SocketMonitor
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		mon, err = qmp.NewSocketMonitor("unix", path, 5*time.Second)
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := mon.Connect(); err != nil {
		t.Fatalf("negotiation: %v", err)
	}
	return mon
}

// TestBlockdGoQemu drives the blockd binary with go-qemu's client.
func TestBlockdGoQemu(t *testing.T) {
	bin := buildBlockd(t)
	path := filepath.Join(t.TempDir(), "qmp.sock")
	cmd := startBlockd(t, bin, path)
	mon := connect(t, path)
	if mon.Version.String() != "2.4.0" {
		t.Errorf("version %v", mon.Version)
	}
	out, err := mon.Run([]byte(`{"execute":"query-version"}`))
	if err != nil || !strings.Contains(string(out), `"package":"blocklayer"`) {
		t.Errorf("query-version: %s %v", out, err)
	}
	out, err = mon.Run([]byte(`{"execute":"query-commands"}`))
	var cmds struct {
		Return []qmpschema.CommandInfo `json:"return"`
	}
	if err != nil || json.Unmarshal(out, &cmds) != nil || len(cmds.Return) != 3 {
		t.Errorf("query-commands: %s %v", out, err)
	}
	if _, err := mon.Run([]byte(`{"execute":"no-such-command"}`)); err == nil || err.Error() != "The command no-such-command has not been found" {
		t.Errorf("unknown command: %v", err)
	}
	if _, err := mon.Run([]byte(`{"execute": ]`)); err == nil || !strings.HasPrefix(err.Error(), "JSON parse error") {
		t.Errorf("malformed: %v", err)
	}
	if _, err := mon.Run([]byte(`{"execute":"query-version"}`)); err != nil {
		t.Errorf("after malformed: %v", err)
	}
	mon.Disconnect()
	stopBlockd(t, cmd, path)
}

// TestBlockdGoQemuEvents runs the daemon's serving code in-process (the
// binary has no event sources until the block graph exists) and checks that
// go-qemu receives events.
func TestBlockdGoQemuEvents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qmp.sock")
	srv := &qmpschema.Server{}
	if err := qmpschema.Register(srv, "block-job-cancel", func(_ context.Context, a *qmpschema.BlockJobCancelArgs) (qmpschema.Empty, error) {
		return qmpschema.Empty{}, srv.Emit(qmpschema.BlockJobCancelledEvent{Type: qmpschema.BlockJobTypeCommit, Device: a.Device, Len: 8, Offset: 4})
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, path, srv) }()
	mon := connect(t, path)
	raw, _ := mon.Events(context.Background())
	events := make(chan qmp.Event, 8)
	go func() {
		for ev := range raw {
			events <- ev
		}
	}()
	if _, err := mon.Run([]byte(`{"execute":"block-job-cancel","arguments":{"device":"job7"}}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		if ev.Event != "BLOCK_JOB_CANCELLED" || ev.Data["device"] != "job7" || ev.Data["type"] != "commit" {
			t.Errorf("event %+v", ev)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no event")
	}
	mon.Disconnect()
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}
