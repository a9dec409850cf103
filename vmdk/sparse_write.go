package vmdk

import (
	"encoding/binary"

	"github.com/blocklayer/blocklayer/blockio"
)

// writeAt writes extent-relative [off, off+len(p)). New grains are
// written in full (with the backing file's data or zeros around the
// request), flushed, and only then entered in the grain tables, so a crash
// never leaves a table entry pointing at unwritten data.
func (s *sparseExtent) writeAt(p []byte, off int64, back backingFunc) error {
	if s.readOnly {
		return blockio.ErrReadOnly
	}
	for len(p) > 0 {
		g := off / s.grainBytes
		gi := g / s.gtes
		lastG := min((off+int64(len(p))-1)/s.grainBytes, (gi+1)*s.gtes-1)
		s.mu.Lock()
		if ch := s.pending[g]; ch != nil {
			s.mu.Unlock()
			<-ch
			continue
		}
		t, err := s.gtLocked(gi)
		if err == nil && t == nil {
			t, err = s.allocGTLocked(gi)
		}
		if err != nil {
			s.mu.Unlock()
			return err
		}
		j := g % s.gtes
		e := t[j]
		if s.isData(e) && int64(e) < s.overhead {
			s.mu.Unlock()
			return blockio.Corruptf("vmdk grain table", int64(s.gd[gi])*sectorSize+4*j, "grain %d points into the metadata (sector %d)", g, e)
		}
		if s.isData(e) {
			// In place: extend over host-contiguous, settled grains.
			k := int64(1)
			for g+k <= lastG && int64(t[j+k]) == int64(e)+k*s.grainSec && s.pending[g+k] == nil {
				k++
			}
			s.mu.Unlock()
			in := off % s.grainBytes
			n := min(int64(len(p)), k*s.grainBytes-in)
			if err := s.writeHost(p[:n], int64(e)*sectorSize+in); err != nil {
				return err
			}
			p, off = p[n:], off+n
			continue
		}
		// Allocate a run of grains that are not data and not pending.
		k := int64(1)
		for g+k <= lastG && !s.isData(t[j+k]) && s.pending[g+k] == nil {
			k++
		}
		start := s.nextSec
		if start+k*s.grainSec > maxExtentSectors {
			s.mu.Unlock()
			return &blockio.UnsupportedError{Feature: "vmdk sparse extent larger than 2 TiB of grains"}
		}
		if err := s.growLocked((start + k*s.grainSec) * sectorSize); err != nil {
			s.mu.Unlock()
			return err
		}
		s.nextSec += k * s.grainSec
		old := make([]uint32, k)
		copy(old, t[j:j+k])
		ch := make(chan struct{})
		for i := range k {
			s.pending[g+i] = ch
		}
		s.mu.Unlock()

		n, err := s.fillNewGrains(p, off, g, k, old, start, back)
		s.mu.Lock()
		if err == nil {
			ents := make([]uint32, k)
			for i := range k {
				ents[i] = uint32(start + i*s.grainSec)
			}
			err = s.setEntriesLocked(gi, j, ents)
		}
		for i := range k {
			delete(s.pending, g+i)
		}
		close(ch)
		full := len(s.dirty) >= maxDirtyTables
		s.mu.Unlock()
		if err == nil && full {
			err = s.flushMeta()
		}
		if err != nil {
			return err
		}
		p, off = p[n:], off+n
	}
	return nil
}

// fillNewGrains builds k grains starting at grain g (with the request's
// bytes, and backing data or zeros around them) and writes them at sector
// start. It returns how many request bytes it consumed.
func (s *sparseExtent) fillNewGrains(p []byte, off, g, k int64, old []uint32, start int64, back backingFunc) (int64, error) {
	gStart := g * s.grainBytes
	in := off - gStart
	if in == 0 && int64(len(p)) >= k*s.grainBytes {
		// Whole grains: write the caller's bytes directly.
		n := k * s.grainBytes
		return n, s.writeHost(p[:n], start*sectorSize)
	}
	total := k * s.grainBytes
	n := min(int64(len(p)), total-in)
	if total > 1<<20 {
		// Huge grains (up to 1 GiB): fill around the request in chunks
		// rather than building the whole grain in memory.
		return n, s.fillChunked(p[:n], gStart, in, total, old, start, back)
	}
	buf := make([]byte, total)
	fill := func(lo, hi int64, e uint32) error { // buf-relative
		if lo >= hi {
			return nil
		}
		if e == gteUnallocated && back != nil {
			return back(buf[lo:hi], gStart+lo)
		}
		return nil // zeros
	}
	if err := fill(0, in, old[0]); err != nil {
		return 0, err
	}
	if err := fill(in+n, total, old[k-1]); err != nil {
		return 0, err
	}
	copy(buf[in:], p[:n])
	if err := s.writeHost(buf, start*sectorSize); err != nil {
		return 0, err
	}
	return n, nil
}

// fillChunked writes new grains [gStart, gStart+total) at sector start as
// head fill, request data, tail fill, using at most 1 MiB of memory.
func (s *sparseExtent) fillChunked(p []byte, gStart, in, total int64, old []uint32, start int64, back backingFunc) error {
	host := start * sectorSize
	buf := make([]byte, min(total, 1<<20))
	fill := func(lo, hi int64, e uint32) error {
		for lo < hi {
			c := buf[:min(hi-lo, int64(len(buf)))]
			if e == gteUnallocated && back != nil {
				if err := back(c, gStart+lo); err != nil {
					return err
				}
			} else {
				clear(c)
			}
			if err := s.writeHost(c, host+lo); err != nil {
				return err
			}
			lo += int64(len(c))
		}
		return nil
	}
	if err := fill(0, in, old[0]); err != nil {
		return err
	}
	if err := s.writeHost(p, host+in); err != nil {
		return err
	}
	return fill(in+int64(len(p)), total, old[len(old)-1])
}

func (s *sparseExtent) writeHost(p []byte, host int64) error {
	_, err := s.dev.WriteAt(p, host)
	return err
}

// growLocked makes the extent file at least end bytes long.
func (s *sparseExtent) growLocked(end int64) error {
	if end <= s.dev.Size() {
		return nil
	}
	return blockio.Truncate(s.dev, end, blockio.PreallocOff)
}

// setEntriesLocked sets entries of GT gi from index j in memory and marks
// the table dirty; flushMeta writes it after the data is durable.
func (s *sparseExtent) setEntriesLocked(gi, j int64, ents []uint32) error {
	t, err := s.gtLocked(gi)
	if err != nil {
		return err
	}
	if t == nil {
		return blockio.Corruptf("vmdk grain directory", s.gdOff+4*gi, "grain table %d vanished", gi)
	}
	copy(t[j:], ents)
	s.dirty[uint32(gi)] = true
	return nil
}

// allocGTLocked reserves space for a new grain table (and its redundant
// copy) at the end of the file. The tables and directory entries are
// written by flushMeta: tables first, flushed, then the directory.
func (s *sparseExtent) allocGTLocked(gi int64) ([]uint32, error) {
	gtSec := (s.gtBytes + sectorSize - 1) / sectorSize
	copies := int64(1)
	if s.rgd != nil {
		copies = 2
	}
	start := s.nextSec
	if start+copies*gtSec > maxExtentSectors {
		return nil, &blockio.UnsupportedError{Feature: "vmdk sparse extent larger than 2 TiB"}
	}
	if err := s.growLocked((start + copies*gtSec) * sectorSize); err != nil {
		return nil, err
	}
	s.nextSec = start + copies*gtSec
	s.gd[gi] = uint32(start)
	if s.rgd != nil {
		s.rgd[gi] = uint32(start + gtSec)
	}
	t := make([]uint32, s.gtes)
	s.cache[uint32(gi)] = t
	s.dirty[uint32(gi)] = true
	s.newGD[uint32(gi)] = true
	return t, nil
}

// maxDirtyTables bounds the grain tables held dirty in memory before a
// write triggers a metadata flush.
const maxDirtyTables = 512

// flushMeta makes allocations durable in crash-safe order: flush the data,
// write the dirty grain tables (both copies), flush, write new directory
// entries, flush. Until then new grains are invisible on disk, so a crash
// leaves at most leaked space. Serialized by flushMu; I/O runs without mu.
func (s *sparseExtent) flushMeta() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	type tw struct {
		gi         uint32
		prim, red  uint32
		data       []byte
		newGDEntry bool
	}
	s.mu.Lock()
	if len(s.dirty) == 0 {
		s.mu.Unlock()
		return nil // the caller flushes the file itself when it must be durable
	}
	var ws []tw
	for gi := range s.dirty {
		t := s.cache[gi]
		b := make([]byte, s.gtBytes)
		for i, v := range t {
			binary.LittleEndian.PutUint32(b[4*i:], v)
		}
		w := tw{gi: gi, prim: s.gd[gi], data: b, newGDEntry: s.newGD[gi]}
		if s.rgd != nil {
			w.red = s.rgd[gi]
		}
		ws = append(ws, w)
		s.flushing[gi]++
	}
	clear(s.dirty)
	clear(s.newGD)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		for _, w := range ws {
			if s.flushing[w.gi]--; s.flushing[w.gi] <= 0 {
				delete(s.flushing, w.gi)
			}
		}
		s.mu.Unlock()
	}()
	err := s.dev.Flush()
	newGD := false
	for _, w := range ws {
		if err != nil {
			break
		}
		if _, err = s.dev.WriteAt(w.data, int64(w.prim)*sectorSize); err == nil && w.red != 0 {
			_, err = s.dev.WriteAt(w.data, int64(w.red)*sectorSize)
		}
		newGD = newGD || w.newGDEntry
	}
	if err == nil && s.cowd {
		// Keep the COWD header's free-sector field past our allocations.
		var b [4]byte
		s.mu.Lock()
		binary.LittleEndian.PutUint32(b[:], uint32(s.nextSec))
		s.mu.Unlock()
		_, err = s.dev.WriteAt(b[:], 28)
	}
	if err == nil && newGD {
		err = s.dev.Flush()
		var b [4]byte
		for _, w := range ws {
			if err != nil || !w.newGDEntry {
				continue
			}
			binary.LittleEndian.PutUint32(b[:], w.prim)
			if _, err = s.dev.WriteAt(b[:], s.gdOff+4*int64(w.gi)); err == nil && w.red != 0 {
				binary.LittleEndian.PutUint32(b[:], w.red)
				_, err = s.dev.WriteAt(b[:], s.rgdOff+4*int64(w.gi))
			}
		}
	}
	if err == nil {
		err = s.dev.Flush()
	}
	if err != nil {
		s.mu.Lock()
		for _, w := range ws {
			s.dirty[w.gi] = true
			if w.newGDEntry {
				s.newGD[w.gi] = true
			}
		}
		s.mu.Unlock()
	}
	return err
}

// writeZeroes makes extent-relative [off, off+n) read as zeros: whole
// grains become zeroed-grain entries when the extent supports them,
// unallocated grains without a parent are left alone, the rest is written.
func (s *sparseExtent) writeZeroes(off, n int64, mayUnmap bool, back backingFunc) error {
	if s.readOnly {
		return blockio.ErrReadOnly
	}
	for n > 0 {
		g := off / s.grainBytes
		in := off % s.grainBytes
		l := min(n, s.grainBytes-in)
		gi, j := g/s.gtes, g%s.gtes
		s.mu.Lock()
		if ch := s.pending[g]; ch != nil {
			s.mu.Unlock()
			<-ch
			continue
		}
		t, err := s.gtLocked(gi)
		if err != nil {
			s.mu.Unlock()
			return err
		}
		e := uint32(0)
		if t != nil {
			e = t[j]
		}
		switch {
		case e == gteZero && s.zeroGrain:
			s.mu.Unlock()
		case e == gteUnallocated && back == nil:
			s.mu.Unlock()
		case l == s.grainBytes && s.zeroGrain && (mayUnmap || !s.isData(e)):
			if t == nil {
				if _, err = s.allocGTLocked(gi); err == nil {
					err = s.setEntriesLocked(gi, j, []uint32{gteZero})
				}
			} else {
				err = s.setEntriesLocked(gi, j, []uint32{gteZero})
			}
			s.mu.Unlock()
		default:
			s.mu.Unlock()
			err = s.writeAt(zeroGrainBuf(l), off, back)
		}
		if err != nil {
			return err
		}
		off += l
		n -= l
	}
	return nil
}

var zeroBuf = make([]byte, 1<<20)

func zeroGrainBuf(n int64) []byte {
	if n <= int64(len(zeroBuf)) {
		return zeroBuf[:n]
	}
	return make([]byte, n)
}
