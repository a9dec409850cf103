package qcow2_test

import (
	"fmt"
	"log"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/qcow2"
)

// Create an image in memory, write to it and look at what is allocated.
func Example() {
	img, err := qcow2.Create(blockio.NewMem(0), qcow2.CreateOptions{Size: 1 << 20, ClusterSize: 4096})
	if err != nil {
		log.Fatal(err)
	}
	defer img.Close()
	if _, err := img.WriteAt([]byte("hello, qcow2"), 8192); err != nil {
		log.Fatal(err)
	}
	buf := make([]byte, 12)
	if _, err := img.ReadAt(buf, 8192); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", buf)
	for off := int64(0); off < img.Size(); {
		e, err := img.BlockStatus(off, img.Size()-off)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%d+%d data=%v zero=%v\n", e.Start, e.Length, e.Data, e.Zero)
		off = e.End()
	}
	// Output:
	// hello, qcow2
	// 0+8192 data=false zero=true
	// 8192+4096 data=true zero=false
	// 12288+1036288 data=false zero=true
}
