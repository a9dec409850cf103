package throttle

import (
	"context"

	"github.com/blocklayer/blocklayer/blockio"
)

// Device throttles a blockio.Device through a Member, the way QEMU's
// throttle filter driver does: reads are read requests, writes, zero
// writes and discards are write requests of their length; Flush, Size,
// BlockStatus and Truncate pass through unthrottled. Requests outside the
// device are refused before they are charged. Every capability is
// offered; when the underlying device lacks one, blockio's portable
// fallback applies (zero writes become written zeros and are charged as
// such, discards are ignored, status is "allocated data", truncation is
// unsupported).
//
// A Device is safe for concurrent use if the underlying device is. Close
// closes the underlying device; the Member is not left (its owner decides).
type Device struct {
	dev blockio.Device
	m   *Member
}

var (
	_ blockio.Device         = (*Device)(nil)
	_ blockio.Discarder      = (*Device)(nil)
	_ blockio.ZeroWriter     = (*Device)(nil)
	_ blockio.StatusReporter = (*Device)(nil)
	_ blockio.Truncater      = (*Device)(nil)
)

// NewDevice returns dev throttled through m.
func NewDevice(dev blockio.Device, m *Member) *Device { return &Device{dev: dev, m: m} }

// Unwrap returns the underlying device.
func (d *Device) Unwrap() blockio.Device { return d.dev }

// Member returns the member the device is throttled through.
func (d *Device) Member() *Member { return d.m }

// ReadAt waits for the read's turn, then reads.
func (d *Device) ReadAt(p []byte, off int64) (int, error) {
	return d.ReadAtContext(context.Background(), p, off)
}

// WriteAt waits for the write's turn, then writes.
func (d *Device) WriteAt(p []byte, off int64) (int, error) {
	return d.WriteAtContext(context.Background(), p, off)
}

// ReadAtContext is ReadAt giving up with ctx.Err() (and nothing read or
// charged) if ctx is done while the request is throttled.
func (d *Device) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if err := d.admit(ctx, "read", false, off, int64(len(p))); err != nil {
		return 0, err
	}
	return d.dev.ReadAt(p, off)
}

// WriteAtContext is WriteAt giving up with ctx.Err() (and nothing written
// or charged) if ctx is done while the request is throttled.
func (d *Device) WriteAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if err := d.admit(ctx, "write", true, off, int64(len(p))); err != nil {
		return 0, err
	}
	return d.dev.WriteAt(p, off)
}

func (d *Device) admit(ctx context.Context, op string, write bool, off, n int64) error {
	if err := blockio.CheckRange(op, off, n, d.dev.Size()); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	return d.m.Wait(ctx, write, n)
}

// Size returns the underlying device's size.
func (d *Device) Size() int64 { return d.dev.Size() }

// Flush flushes the underlying device (not throttled).
func (d *Device) Flush() error { return d.dev.Flush() }

// Close closes the underlying device.
func (d *Device) Close() error { return d.dev.Close() }

// Discard is charged as a write of n bytes, then passed on.
func (d *Device) Discard(off, n int64) error {
	if err := d.admit(context.Background(), "discard", true, off, n); err != nil {
		return err
	}
	return blockio.Discard(d.dev, off, n)
}

// WriteZeroes is charged as a write of n bytes, then passed on.
func (d *Device) WriteZeroes(off, n int64, mayUnmap bool) error {
	if err := d.admit(context.Background(), "write zeroes", true, off, n); err != nil {
		return err
	}
	return blockio.WriteZeroes(d.dev, off, n, mayUnmap)
}

// BlockStatus passes through unthrottled.
func (d *Device) BlockStatus(off, n int64) (blockio.Extent, error) {
	return blockio.BlockStatus(d.dev, off, n)
}

// Truncate passes through unthrottled.
func (d *Device) Truncate(size int64, prealloc blockio.Prealloc) error {
	return blockio.Truncate(d.dev, size, prealloc)
}
