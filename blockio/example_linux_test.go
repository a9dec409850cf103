//go:build linux

package blockio_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/blocklayer/blocklayer/blockio"
)

// Create a raw image file, write to it and make the data durable.
func ExampleCreateFile() {
	dir, _ := os.MkdirTemp("", "blockio-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "disk.raw")

	f, err := blockio.CreateFile(path, 16<<20, blockio.FileOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	f.WriteAt([]byte("boot sector"), 0)
	if err := f.Flush(); err != nil { // fdatasync
		fmt.Println(err)
	}

	// A second read-write open is refused while f holds the image, as
	// QEMU would refuse it.
	_, err = blockio.OpenFile(path, blockio.FileOptions{})
	fmt.Println(errors.Is(err, blockio.ErrLocked))
	f.Close()

	ro, _ := blockio.OpenFile(path, blockio.FileOptions{ReadOnly: true})
	defer ro.Close()
	_, err = ro.WriteAt([]byte("x"), 0)
	fmt.Println(ro.Size(), errors.Is(err, blockio.ErrReadOnly))
	// Output:
	// true
	// 16777216 true
}
