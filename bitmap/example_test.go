package bitmap_test

import (
	"fmt"

	"github.com/blocklayer/blocklayer/bitmap"
)

func Example() {
	// A 1 TiB device tracked at 64 KiB granularity.
	h, err := bitmap.New(1<<40, 64<<10)
	if err != nil {
		panic(err)
	}
	h.Set(4096, 4096)     // a 4 KiB write dirties its whole 64 KiB group
	h.Set(1<<30, 200<<10) // 200 KiB at 1 GiB: four groups
	h.Set(1<<39+10, 1)    // one byte in the middle of the device
	fmt.Println("dirty bytes:", h.Count())

	it := h.Iterator(0)
	for {
		off, n, ok := it.NextArea(0)
		if !ok {
			break
		}
		fmt.Printf("dirty area at %d, %d bytes\n", off, n)
	}

	// Named bitmaps with the incremental-backup life cycle.
	s, _ := bitmap.NewSet(1 << 30)
	bm, _ := s.Add("inc0", bitmap.AddOptions{Granularity: 64 << 10})
	s.MarkDirty(0, 512) // the write hook
	bm.CreateSuccessor()
	fmt.Println("status:", bm.Status(), "clear:", bm.Clear())
	s.MarkDirty(1<<20, 512) // lands in the successor
	bm.Abdicate()           // backup succeeded
	fmt.Printf("%+v\n", bm.Info())

	// Output:
	// dirty bytes: 393216
	// dirty area at 0, 65536 bytes
	// dirty area at 1073741824, 262144 bytes
	// dirty area at 549755813888, 65536 bytes
	// status: frozen clear: bitmap: clear "inc0": bitmap is frozen
	// {Name:inc0 Count:65536 Granularity:65536 Status:active}
}

// A job queues copy requests in batches: NextAreas fills the spare capacity
// of its slice, here at most two areas of at most 128 KiB per call.
func ExampleIterator_NextAreas() {
	h, _ := bitmap.New(1<<30, 64<<10)
	h.Set(0, 64<<10)
	h.Set(1<<20, 320<<10) // five groups: split by maxLen
	h.Set(1<<29, 1)
	it := h.Iterator(0)
	batch := make([]bitmap.Area, 0, 2)
	for {
		batch = it.NextAreas(batch[:0], 128<<10)
		if len(batch) == 0 {
			break
		}
		fmt.Println(batch)
	}
	// Output:
	// [{0 65536} {1048576 131072}]
	// [{1179648 131072} {1310720 65536}]
	// [{536870912 65536}]
}
