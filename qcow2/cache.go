package qcow2

import (
	"cmp"
	"slices"
)

// tableCache is an LRU cache of cluster-sized metadata tables (L2 tables
// or refcount blocks) keyed by host offset. It is not safe for concurrent
// use: the Image's metadata mutex guards it. Tables are written back by
// the owner's writeback function when dirty entries are evicted or
// flushed.
type tableCache struct {
	max        int
	size       int // table size in bytes
	m          map[int64]*ctable
	head, tail *ctable // head = most recently used
	ndirty     int
	// writeback writes a dirty table; set by the owner.
	writeback func(t *ctable) error
}

type ctable struct {
	off        int64
	buf        []byte
	dirty      bool
	prev, next *ctable
}

func newTableCache(max, size int) *tableCache {
	if max < 2 {
		max = 2
	}
	return &tableCache{max: max, size: size, m: make(map[int64]*ctable, max)}
}

func (c *tableCache) unlink(t *ctable) {
	if t.prev != nil {
		t.prev.next = t.next
	} else {
		c.head = t.next
	}
	if t.next != nil {
		t.next.prev = t.prev
	} else {
		c.tail = t.prev
	}
	t.prev, t.next = nil, nil
}

func (c *tableCache) pushFront(t *ctable) {
	t.prev = nil
	t.next = c.head
	if c.head != nil {
		c.head.prev = t
	}
	c.head = t
	if c.tail == nil {
		c.tail = t
	}
}

// lookup returns the cached table at off or nil, marking it recently used.
func (c *tableCache) lookup(off int64) *ctable {
	t := c.m[off]
	if t != nil && c.head != t {
		c.unlink(t)
		c.pushFront(t)
	}
	return t
}

// slot returns a table object for off (not yet in the map) recycling the
// least recently used entry when the cache is full. A dirty victim is
// written back first.
func (c *tableCache) slot(off int64) (*ctable, error) {
	var t *ctable
	if len(c.m) >= c.max && c.tail != nil {
		v := c.tail
		if v.dirty {
			if err := c.writeback(v); err != nil {
				return nil, err
			}
		}
		c.markClean(v)
		c.unlink(v)
		delete(c.m, v.off)
		t = v
	} else {
		t = &ctable{buf: make([]byte, c.size)}
	}
	t.off = off
	return t, nil
}

// insert adds t (from slot) to the cache.
func (c *tableCache) insert(t *ctable) {
	c.m[t.off] = t
	c.pushFront(t)
}

func (c *tableCache) markDirty(t *ctable) {
	if !t.dirty {
		t.dirty = true
		c.ndirty++
	}
}

func (c *tableCache) markClean(t *ctable) {
	if t.dirty {
		t.dirty = false
		c.ndirty--
	}
}

// drop removes the table at off without writing it back.
func (c *tableCache) drop(off int64) {
	if t := c.m[off]; t != nil {
		c.markClean(t)
		c.unlink(t)
		delete(c.m, off)
	}
}

// dirtyTables returns the dirty tables in ascending offset order.
func (c *tableCache) dirtyTables() []*ctable {
	if c.ndirty == 0 {
		return nil
	}
	var out []*ctable
	for t := c.head; t != nil; t = t.next {
		if t.dirty {
			out = append(out, t)
		}
	}
	sortTables(out)
	return out
}

func sortTables(ts []*ctable) {
	slices.SortFunc(ts, func(a, b *ctable) int { return cmp.Compare(a.off, b.off) })
}
