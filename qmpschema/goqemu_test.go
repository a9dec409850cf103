// Drives our QMP server with github.com/digitalocean/go-qemu's qmp client,
// a client we did not write.

package qmpschema

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
)

// TestGoQemuClient drives the server with digitalocean/go-qemu's QMP
// client, which we did not write.
func TestGoQemuClient(t *testing.T) {
	s := &Server{}
	must(Register(s, "block-job-cancel", func(_ context.Context, a *BlockJobCancelArgs) (Empty, error) {
		return Empty{}, s.Emit(BlockJobCancelledEvent{Type: BlockJobTypeStream, Device: a.Device, Len: 100, Offset: 50})
	}))
	path := startServer(t, s)

	mon, err := qmp.NewSocketMonitor("unix", path, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := mon.Connect(); err != nil {
		t.Fatalf("negotiation: %v", err)
	}
	defer mon.Disconnect()
	if mon.Version == nil || mon.Version.String() != "2.4.0" || mon.Version.Package != "blocklayer" {
		t.Errorf("version from greeting: %+v", mon.Version)
	}
	raw, err := mon.Events(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// go-qemu's reader blocks until each event is taken, so drain them
	// concurrently (as any go-qemu user must).
	events := make(chan qmp.Event, 16)
	go func() {
		for ev := range raw {
			events <- ev
		}
	}()

	out, err := mon.Run([]byte(`{"execute": "query-version"}`))
	if err != nil {
		t.Fatal(err)
	}
	var ver struct {
		Return VersionInfo `json:"return"`
	}
	if err := json.Unmarshal(out, &ver); err != nil || ver.Return.Qemu.Minor != 4 {
		t.Errorf("query-version: %s %v", out, err)
	}

	out, err = mon.Run([]byte(`{"execute": "query-commands"}`))
	if err != nil {
		t.Fatal(err)
	}
	var cmds struct {
		Return []CommandInfo `json:"return"`
	}
	if err := json.Unmarshal(out, &cmds); err != nil || len(cmds.Return) != 4 {
		t.Errorf("query-commands: %s %v", out, err)
	}

	if _, err := mon.Run([]byte(`{"execute": "no-such-command"}`)); err == nil || err.Error() != "The command no-such-command has not been found" {
		t.Errorf("unknown command: %v", err)
	}
	// go-qemu passes raw bytes through, so it can send malformed JSON too.
	if _, err := mon.Run([]byte(`{"execute": "query-version",}`)); err == nil || !strings.HasPrefix(err.Error(), "JSON parse error") {
		t.Errorf("malformed: %v", err)
	}
	if _, err := mon.Run([]byte(`{"execute": "block-job-cancel", "arguments": {"device": "j1", "force": "yes"}}`)); err == nil ||
		err.Error() != "Invalid parameter type for 'force', expected: boolean" {
		t.Errorf("bad argument: %v", err)
	}

	if _, err := mon.Run([]byte(`{"execute": "block-job-cancel", "arguments": {"device": "j1"}}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		if ev.Event != "BLOCK_JOB_CANCELLED" || ev.Data["device"] != "j1" || ev.Data["offset"] != 50.0 || ev.Timestamp.Seconds == 0 {
			t.Errorf("event %+v", ev)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no event delivered")
	}

	// The same malformed message on a raw socket: the error has the class
	// go-qemu does not show, and the connection stays usable.
	rc := dial(t, path)
	rc.negotiate()
	rc.send(`{"execute": "query-version"`)
	rc.send("\n}}\n")
	if m := rc.recv(); m["return"] == nil {
		t.Errorf("split message: %v", m)
	}
	wantError(t, rc.recv(), "GenericError", "JSON parse error, expecting value")
	rc.send(`{"execute": "no-such-command"}`)
	wantError(t, rc.recv(), "CommandNotFound", "The command no-such-command has not been found")
}
