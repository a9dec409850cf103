package vmdk_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/blocklayer/blocklayer/vmdk"
)

func Example() {
	dir, _ := os.MkdirTemp("", "vmdk-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "disk.vmdk")

	img, err := vmdk.CreateFile(path, 1<<30, vmdk.CreateOptions{Subformat: vmdk.TwoGbMaxExtentSparse})
	if err != nil {
		fmt.Println(err)
		return
	}
	img.WriteAt([]byte("hello, vmdk"), 512<<20)
	img.Close()

	img, err = vmdk.OpenFile(path, vmdk.Options{ReadOnly: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer img.Close()
	buf := make([]byte, 11)
	img.ReadAt(buf, 512<<20)
	st, _ := img.BlockStatus(0, img.Size())
	fmt.Println(img.CreateType(), img.Size(), string(buf))
	fmt.Println("first extent: data", st.Data, "length", st.Length)
	// Output:
	// twoGbMaxExtentSparse 1073741824 hello, vmdk
	// first extent: data false length 536870912
}
