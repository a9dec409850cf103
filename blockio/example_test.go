package blockio_test

import (
	"errors"
	"fmt"

	"github.com/blocklayer/blocklayer/blockio"
)

// Write and read a sparse in-memory device, and look at its allocation.
func Example() {
	dev := blockio.NewMem(1 << 20)
	defer dev.Close()

	dev.WriteAt([]byte("hello, block layer"), 65536)
	buf := make([]byte, 18)
	dev.ReadAt(buf, 65536)
	fmt.Printf("%s\n", buf)

	for off := int64(0); off < dev.Size(); {
		e, _ := blockio.BlockStatus(dev, off, dev.Size()-off)
		fmt.Printf("%7d +%7d data=%v zero=%v\n", e.Start, e.Length, e.Data, e.Zero)
		off = e.End()
	}

	_, err := dev.ReadAt(buf, dev.Size())
	fmt.Println(errors.Is(err, blockio.ErrOutOfRange))
	// Output:
	// hello, block layer
	//       0 +  65536 data=false zero=true
	//   65536 +  65536 data=true zero=false
	//  131072 + 917504 data=false zero=true
	// true
}
