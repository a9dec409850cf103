package main

import (
	"fmt"
	"os"
)

// Example creates a raw image, writes a pattern with the io runner,
// verifies it and compares the image with itself, as a shell user would
// with qemu-img and qemu-io.
func Example() {
	dir, err := os.MkdirTemp("", "blockimg-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	old, _ := os.Getwd()
	defer os.Chdir(old)
	os.Chdir(dir)

	run([]string{"create", "-f", "raw", "disk.raw", "1M"}, os.Stdout, os.Stderr)
	run([]string{"io", "-f", "raw", "-c", "write -q -P 0x5a 64k 4k", "-c", "read -q -P 0x5a 64k 4k", "disk.raw"}, os.Stdout, os.Stderr)
	run([]string{"compare", "disk.raw", "disk.raw"}, os.Stdout, os.Stderr)
	rc := run([]string{"check", "disk.raw"}, os.Stdout, os.Stdout)
	fmt.Println("check exit code:", rc)
	// Output:
	// Formatting 'disk.raw', fmt=raw size=1048576
	// Images are identical.
	// blockimg: This image format does not support checks
	// check exit code: 63
}
