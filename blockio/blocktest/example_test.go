package blocktest_test

import (
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/blockio/blocktest"
)

// A Device implementation's test runs the suite; OnBase enables the
// crash-durability test. An image format would format base when create
// is true and open the crash image otherwise.
func ExampleRun() {
	_ = func(t *testing.T) {
		blocktest.Run(t, func(t *testing.T, size int64) blockio.Device {
			return blockio.NewMem(size)
		}, blocktest.Options{OnBase: blocktest.Identity})
	}
}

func TestIdentity(t *testing.T) {
	m := blockio.NewMem(512)
	if blocktest.Identity(t, m, 512, true) != blockio.Device(m) {
		t.Fatal("Identity changed the device")
	}
}
