package blockio_test

import (
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/blockio/blocktest"
)

func TestMemConformance(t *testing.T) {
	blocktest.Run(t, func(t *testing.T, size int64) blockio.Device {
		return blockio.NewMem(size)
	}, blocktest.Options{OnBase: blocktest.Identity})
}

func TestMemReadOnlyConformance(t *testing.T) {
	blocktest.Run(t, func(t *testing.T, size int64) blockio.Device {
		m := blockio.NewMem(size)
		for off := int64(0); off < size; off += 300 << 10 {
			m.WriteAt([]byte("some data that is not zero"), off)
		}
		m.SetReadOnly(true)
		return m
	}, blocktest.Options{ReadOnly: true})
}

func TestMemUnalignedSize(t *testing.T) {
	blocktest.Run(t, func(t *testing.T, size int64) blockio.Device {
		return blockio.NewMem(size)
	}, blocktest.Options{Size: 1<<20 + 1000, Short: true})
}

func TestMemClone(t *testing.T) {
	m := blockio.NewMem(1 << 20)
	m.WriteAt([]byte("hello"), 70000)
	c, err := m.Clone()
	if err != nil {
		t.Fatal(err)
	}
	m.WriteAt([]byte("HELLO"), 70000)
	b := make([]byte, 5)
	c.ReadAt(b, 70000)
	if string(b) != "hello" || c.Size() != m.Size() {
		t.Fatalf("clone = %q size %d", b, c.Size())
	}
	m.Close()
	if _, err := m.Clone(); err == nil {
		t.Fatal("Clone of a closed Mem succeeded")
	}
}
