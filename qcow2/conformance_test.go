package qcow2

import (
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/blockio/blocktest"
)

func onBase(opts CreateOptions) blocktest.OnBase {
	return func(t *testing.T, base blockio.Device, size int64, create bool) blockio.Device {
		if create {
			o := opts
			o.Size = size
			img, err := Create(base, o)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
		img, err := Open(base, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
}

func TestConformance(t *testing.T) {
	for _, c := range []struct {
		name string
		opts CreateOptions
	}{
		{"default", CreateOptions{}},
		{"c512-v2", CreateOptions{ClusterSize: 512, Compat: "0.10"}},
		{"c16k-extl2-rc1", CreateOptions{ClusterSize: 16 << 10, ExtendedL2: true, RefcountBits: 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ob := onBase(c.opts)
			blocktest.Run(t, func(t *testing.T, size int64) blockio.Device {
				return ob(t, blockio.NewMem(0), size, true)
			}, blocktest.Options{OnBase: ob})
		})
	}
}
