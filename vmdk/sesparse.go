package vmdk

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/blocklayer/blocklayer/blockio"
)

// seSparse (ESXi 6.5+ space-efficient sparse) constants.
const (
	seConstMagic    = 0x00000000cafebabe
	seVolatileMagic = 0x00000000cafecafe
	seVersion       = 0x0000000200000001
	seGrainSectors  = 8  // 4 KiB grains, the only size QEMU accepts
	seGTSectors     = 64 // 32 KiB grain tables = 4096 u64 entries
	seGTEntries     = seGTSectors * sectorSize / 8
)

// seSparseExtent is a read-only seSparse extent: u64 grain directory and
// table entries, tables in one region, grains in another.
// Safe for concurrent use (the table cache is guarded by mu).
type seSparseExtent struct {
	dev       blockio.Device
	capacity  int64 // sectors
	gd        []uint64
	gtOff     int64 // sectors
	grainsOff int64 // sectors

	mu       sync.Mutex
	cache    map[uint32][]uint64
	cacheMax int // tables kept in cache
}

func openSESparse(dev blockio.Device, lim sparseLimits) (*seSparseExtent, error) {
	const where = "vmdk seSparse header"
	if dev.Size() < 2*sectorSize {
		return nil, blockio.Corruptf(where, 0, "file too short")
	}
	b := make([]byte, sectorSize)
	if _, err := dev.ReadAt(b, 0); err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	f := func(i int) uint64 { return le.Uint64(b[8*i:]) }
	switch {
	case f(0) != seConstMagic:
		return nil, blockio.Corruptf(where, 0, "bad const header magic %#x", f(0))
	case f(1) != seVersion:
		return nil, &blockio.UnsupportedError{Feature: fmt.Sprintf("seSparse version %#x", f(1))}
	case f(3) != seGrainSectors:
		return nil, &blockio.UnsupportedError{Feature: fmt.Sprintf("seSparse grain size %d", f(3))}
	case f(4) != seGTSectors:
		return nil, &blockio.UnsupportedError{Feature: fmt.Sprintf("seSparse grain table size %d", f(4))}
	case f(5) != 0:
		return nil, &blockio.UnsupportedError{Feature: fmt.Sprintf("seSparse flags %#x", f(5))}
	case f(6)|f(7)|f(8)|f(9) != 0 || !blockio.IsZero(b[208:]):
		return nil, &blockio.UnsupportedError{Feature: "seSparse reserved fields or padding in use"}
	}
	s := &seSparseExtent{dev: dev, cache: map[uint32][]uint64{}, cacheMax: 256}
	capacity, volOff, gdOff, gdSize := f(2), f(10), f(16), f(17)
	s.gtOff, s.grainsOff = int64(min(f(18), 1<<40)), int64(min(f(24), 1<<40))
	if capacity > 1<<50 || volOff > 1<<40 || gdOff > 1<<40 || gdSize > 1<<40 {
		return nil, blockio.Corruptf(where, 16, "offsets or sizes out of range")
	}
	v := make([]byte, sectorSize)
	if int64(volOff)*sectorSize+sectorSize > dev.Size() {
		return nil, blockio.Corruptf(where, 80, "volatile header beyond the end of the file")
	}
	if _, err := dev.ReadAt(v, int64(volOff)*sectorSize); err != nil {
		return nil, err
	}
	switch {
	case le.Uint64(v) != seVolatileMagic:
		return nil, blockio.Corruptf("vmdk seSparse volatile header", int64(volOff)*sectorSize, "bad magic %#x", le.Uint64(v))
	case le.Uint64(v[24:]) != 0:
		return nil, &blockio.UnsupportedError{Feature: "dirty seSparse image (journal replay)"}
	case !blockio.IsZero(v[32:]):
		return nil, &blockio.UnsupportedError{Feature: "seSparse volatile header padding in use"}
	}
	entries := int64(gdSize) * sectorSize / 8
	if entries > maxGDEntries {
		return nil, blockio.Corruptf(where, 136, "L1 size too big (%d grain directory entries)", entries)
	}
	if int64(capacity) > entries*seGTEntries*seGrainSectors {
		return nil, blockio.Corruptf(where, 16, "capacity %d sectors exceeds what the grain directory maps", capacity)
	}
	off := int64(gdOff) * sectorSize
	if off+entries*8 > dev.Size() {
		return nil, blockio.Corruptf("vmdk seSparse grain directory", off, "beyond the end of the file")
	}
	if !lim.charge(entries * 8) {
		return nil, blockio.Corruptf(where, 136, "grain directory of %d bytes exceeds the metadata memory limit", entries*8)
	}
	raw := make([]byte, entries*8)
	if _, err := dev.ReadAt(raw, off); err != nil {
		return nil, err
	}
	s.gd = make([]uint64, entries)
	for i := range s.gd {
		s.gd[i] = le.Uint64(raw[8*i:])
	}
	s.capacity = int64(capacity)
	return s, nil
}

func (s *seSparseExtent) size() int64 { return s.capacity * sectorSize }

// lookup returns the kind (0 unallocated, 1 zero, 2 data) and host byte
// offset of grain g.
func (s *seSparseExtent) lookup(g int64) (int, int64, error) {
	gi := g / seGTEntries
	s.mu.Lock()
	defer s.mu.Unlock()
	if gi >= int64(len(s.gd)) {
		return 0, 0, blockio.Corruptf("vmdk seSparse grain directory", -1, "grain %d beyond the directory", g)
	}
	d := s.gd[gi]
	if d == 0 {
		return 0, -1, nil
	}
	if d&0xffffffff00000000 != 0x1000000000000000 {
		return 0, 0, blockio.Corruptf("vmdk seSparse grain directory", -1, "entry %d has invalid value %#x", gi, d)
	}
	t, ok := s.cache[uint32(gi)]
	if !ok {
		off := (s.gtOff + int64(d&0xffffffff)*seGTSectors) * sectorSize
		if off+seGTSectors*sectorSize > s.dev.Size() {
			return 0, 0, blockio.Corruptf("vmdk seSparse grain table", off, "beyond the end of the file")
		}
		raw := make([]byte, seGTSectors*sectorSize)
		if _, err := s.dev.ReadAt(raw, off); err != nil {
			return 0, 0, err
		}
		t = make([]uint64, seGTEntries)
		for i := range t {
			t[i] = binary.LittleEndian.Uint64(raw[8*i:])
		}
		if len(s.cache) >= s.cacheMax {
			for k := range s.cache {
				delete(s.cache, k)
				break
			}
		}
		s.cache[uint32(gi)] = t
	}
	e := t[g%seGTEntries]
	switch e >> 60 {
	case 0:
		if e != 0 {
			return 0, 0, blockio.Corruptf("vmdk seSparse grain table", -1, "grain %d: invalid entry %#x", g, e)
		}
		return 0, -1, nil
	case 1, 2: // SCSI-unmapped, zero
		return 1, -1, nil
	case 3:
		idx := int64((e>>48)&0xfff) | int64((e&0xffffffffffff)<<12)
		if idx > 1<<40 {
			return 0, 0, blockio.Corruptf("vmdk seSparse grain table", -1, "grain %d: index out of range", g)
		}
		return 2, (s.grainsOff + idx*seGrainSectors) * sectorSize, nil
	}
	return 0, 0, blockio.Corruptf("vmdk seSparse grain table", -1, "grain %d: invalid entry %#x", g, e)
}

func (s *seSparseExtent) readAt(p []byte, off int64, back backingFunc) error {
	const gb = seGrainSectors * sectorSize
	for len(p) > 0 {
		kind, host, err := s.lookup(off / gb)
		if err != nil {
			return err
		}
		n := min(int64(len(p)), gb-off%gb)
		switch kind {
		case 0:
			if back != nil {
				err = back(p[:n], off)
			} else {
				clear(p[:n])
			}
		case 1:
			clear(p[:n])
		default:
			host += off % gb
			if fs := s.dev.Size(); host+n > fs {
				clear(p[:n])
				if host < fs {
					_, err = s.dev.ReadAt(p[:fs-host], host)
				}
			} else {
				_, err = s.dev.ReadAt(p[:n], host)
			}
		}
		if err != nil {
			return err
		}
		p, off = p[n:], off+n
	}
	return nil
}

func (s *seSparseExtent) status(off, n int64) (statusRun, error) {
	const gb = seGrainSectors * sectorSize
	var r statusRun
	for n > 0 {
		g := off / gb
		s.mu.Lock()
		emptyGT := g/seGTEntries < int64(len(s.gd)) && s.gd[g/seGTEntries] == 0
		s.mu.Unlock()
		var kind int
		var host int64
		var err error
		l := min(n, gb-off%gb)
		if emptyGT {
			kind, host = 0, -1
			l = min(n, (g/seGTEntries+1)*seGTEntries*gb-off)
		} else if kind, host, err = s.lookup(g); err != nil {
			return r, err
		}
		if host >= 0 {
			host += off % gb
		}
		if r.length == 0 {
			r = statusRun{length: l, kind: kind, host: host}
		} else if kind != r.kind || (host >= 0 && host != r.host+r.length) {
			return r, nil
		} else {
			r.length += l
		}
		off += l
		n -= l
	}
	return r, nil
}
