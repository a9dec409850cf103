package blocktest_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/blockio/blocktest"
)

// A Device implementation's test runs the suite; OnBase enables the
// crash-durability test. An image format would format base when create
// is true and open the crash image otherwise. Here the suite runs on the
// in-memory device the way `go test` would run a TestMem function.
func ExampleRun() {
	testMem := func(t *testing.T) {
		blocktest.Run(t, func(t *testing.T, size int64) blockio.Device {
			return blockio.NewMem(size)
		}, blocktest.Options{OnBase: blocktest.Identity, Short: true})
	}
	ok := runQuietly(testing.InternalTest{Name: "TestMem", F: testMem})
	fmt.Println("memory device conforms:", ok)
	// Output: memory device conforms: true
}

// runQuietly runs a test function outside `go test`'s own list, keeping
// its progress lines (printed under -v) out of the example's output.
func runQuietly(tests ...testing.InternalTest) bool {
	stdout := os.Stdout
	if devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil {
		os.Stdout = devNull
		defer devNull.Close()
	}
	defer func() { os.Stdout = stdout }()
	return testing.RunTests(func(string, string) (bool, error) { return true, nil }, tests)
}

func TestIdentity(t *testing.T) {
	m := blockio.NewMem(512)
	if blocktest.Identity(t, m, 512, true) != blockio.Device(m) {
		t.Fatal("Identity changed the device")
	}
}
