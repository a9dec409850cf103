package throttle

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/blockio/blocktest"
)

func TestDeviceConformance(t *testing.T) {
	g, err := NewGroup("conformance", Limits{IOPS: 1_000_000, BPS: 10 << 30})
	if err != nil {
		t.Fatal(err)
	}
	blocktest.Run(t, func(t *testing.T, size int64) blockio.Device {
		m := g.Join(t.Name())
		t.Cleanup(m.Leave)
		return NewDevice(blockio.NewMem(size), m)
	}, blocktest.Options{})
}

func TestDeviceCharges(t *testing.T) {
	g, clk := newFakeGroup(t, Limits{BPSRead: 1 << 30, BPSWrite: 1 << 30})
	m := g.Join("dev")
	d := NewDevice(blockio.NewMem(1<<20), m)
	if d.Unwrap() == nil || d.Member() != m || d.Size() != 1<<20 {
		t.Fatal("accessors")
	}
	buf := bytes.Repeat([]byte{7}, 4096)
	if _, err := d.WriteAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadAt(buf, 4096); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteZeroes(8192, 8192, true); err != nil {
		t.Fatal(err)
	}
	if err := d.Discard(65536, 65536); err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.BlockStatus(0, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := d.Truncate(2<<20, blockio.PreallocOff); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadAt(buf, 3<<20); !errors.Is(err, blockio.ErrOutOfRange) {
		t.Fatalf("out of range read: %v", err)
	}
	if _, err := d.ReadAt(nil, 0); err != nil {
		t.Fatal(err)
	}
	st := m.Stats()
	want := MemberStats{Reads: 1, ReadBytes: 4096, Writes: 3, WriteBytes: 4096 + 8192 + 65536}
	if st != want {
		t.Fatalf("stats %+v, want %+v", st, want)
	}
	_ = clk
}

func TestDeviceCancel(t *testing.T) {
	g, _ := newFakeGroup(t, Limits{IOPS: 1})
	m := g.Join("dev")
	mem := blockio.NewMem(1 << 20)
	d := NewDevice(mem, m)
	buf := bytes.Repeat([]byte{1}, 512)
	if _, err := d.WriteAt(buf, 0); err != nil { // admitted, level 1 > 0.1
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := d.WriteAtContext(ctx, buf, 512)
		done <- err
	}()
	waitFor(t, "queued", func() bool { return queued(m) == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	got := make([]byte, 512)
	if _, err := mem.ReadAt(got, 512); err != nil || !blockio.IsZero(got) {
		t.Fatalf("cancelled write reached the device (err %v)", err)
	}
	if st := m.Stats(); st.Writes != 1 {
		t.Fatalf("stats %+v", st)
	}
}
