package vmdk

import (
	"context"
	"encoding/binary"
	"fmt"
	"sort"
)

// CheckResult reports the consistency of an image's sparse extents, like
// qemu-img check. A plain value.
type CheckResult struct {
	// Corruptions counts table entries that point outside the file, into
	// metadata, at a grain another entry already uses, or that differ
	// between the grain directory and its redundant copy.
	Corruptions int
	// Leaks counts grains' worth of file space after the metadata that no
	// table references (harmless: left by an interrupted allocation).
	Leaks int
	// RedundantMismatches counts grain table entries whose redundant copy
	// differs (possible after a crash between the two table writes; the
	// primary copy is the one used).
	RedundantMismatches int
	// AllocatedGrains counts allocated (data) grain table entries.
	AllocatedGrains int64
	// Problems describes each corruption (capped at 100 lines).
	Problems []string
}

func (r *CheckResult) problem(format string, args ...any) {
	r.Corruptions++
	if len(r.Problems) < 100 {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// Check verifies every sparse extent's grain directory and tables, after
// writing out pending metadata of a writable image. It is safe to run
// concurrently with I/O (it sees a snapshot per grain table).
func (img *Image) Check(ctx context.Context) (CheckResult, error) {
	var r CheckResult
	if err := img.begin(); err != nil {
		return r, err
	}
	defer img.end()
	if img.stream != nil {
		return r, nil
	}
	for i, e := range img.extents {
		if e.kind != kindSparse {
			continue
		}
		if !e.sp.readOnly {
			if err := e.sp.flushMeta(); err != nil {
				return r, err
			}
		}
		if err := e.sp.check(ctx, i, &r); err != nil {
			return r, err
		}
	}
	return r, nil
}

type span struct{ start, end int64 } // bytes

func (s *sparseExtent) check(ctx context.Context, idx int, r *CheckResult) error {
	fsize := s.dev.Size()
	over := s.overhead * sectorSize
	used := []span{{0, over}}
	gdBytes := s.gdEntries * 4
	used = append(used, span{s.gdOff, s.gdOff + gdBytes})
	if s.rgdOff != 0 {
		used = append(used, span{s.rgdOff, s.rgdOff + gdBytes})
	}
	seen := make(map[uint32]int64)
	readGT := func(sec uint32) ([]uint32, error) {
		off := int64(sec) * sectorSize
		if off+s.gtBytes > fsize {
			return nil, nil
		}
		b := make([]byte, s.gtBytes)
		if _, err := s.dev.ReadAt(b, off); err != nil {
			return nil, err
		}
		t := make([]uint32, s.gtes)
		for i := range t {
			t[i] = binary.LittleEndian.Uint32(b[4*i:])
		}
		return t, nil
	}
	s.mu.Lock()
	gd := append([]uint32(nil), s.gd...)
	var rgd []uint32
	if s.rgd != nil {
		rgd = append([]uint32(nil), s.rgd...)
	}
	s.mu.Unlock()
	gtSpan := (s.gtBytes + sectorSize - 1) / sectorSize * sectorSize
	for gi, sec := range gd {
		if err := ctx.Err(); err != nil {
			return err
		}
		if sec == 0 {
			continue
		}
		t, err := readGT(sec)
		if err != nil {
			return err
		}
		if t == nil {
			r.problem("extent %d: grain table %d at sector %d beyond the end of the file", idx, gi, sec)
			continue
		}
		used = append(used, span{int64(sec) * sectorSize, int64(sec)*sectorSize + gtSpan})
		if rgd != nil && rgd[gi] != 0 {
			rt, err := readGT(rgd[gi])
			if err != nil {
				return err
			}
			if rt == nil {
				r.problem("extent %d: redundant grain table %d beyond the end of the file", idx, gi)
			} else {
				used = append(used, span{int64(rgd[gi]) * sectorSize, int64(rgd[gi])*sectorSize + gtSpan})
				for j := range t {
					if t[j] != rt[j] {
						r.RedundantMismatches++
					}
				}
			}
		}
		for j, e := range t {
			if !s.isData(e) {
				continue
			}
			g := int64(gi)*s.gtes + int64(j)
			r.AllocatedGrains++
			host := int64(e) * sectorSize
			if host >= fsize {
				r.problem("extent %d: grain %d: cluster offset %#x beyond image size %#x", idx, g, host, fsize)
				continue
			}
			if host < over && !s.compressed {
				r.problem("extent %d: grain %d: offset %#x points into the metadata", idx, g, host)
				continue
			}
			if prev, dup := seen[e]; dup {
				r.problem("extent %d: grains %d and %d share host sector %d", idx, prev, g, e)
				continue
			}
			seen[e] = g
			if !s.compressed {
				used = append(used, span{host, host + s.grainBytes})
			}
		}
	}
	if s.compressed {
		return nil
	}
	// Grain tables and grains must not overlap each other (the GDs and the
	// header area are the first three spans).
	base := 2
	if s.rgdOff != 0 {
		base = 3
	}
	objs := append([]span(nil), used[base:]...)
	sort.Slice(objs, func(i, j int) bool { return objs[i].start < objs[j].start })
	for i := 1; i < len(objs); i++ {
		if objs[i].start < objs[i-1].end {
			r.problem("extent %d: structures at %#x and %#x overlap", idx, objs[i-1].start, objs[i].start)
		}
	}
	// Leaks: file space after the metadata that nothing references.
	sort.Slice(used, func(i, j int) bool { return used[i].start < used[j].start })
	var covered, end int64
	for _, u := range used {
		u.end = min(u.end, fsize)
		if u.start < end {
			u.start = end
		}
		if u.end > u.start {
			covered += u.end - u.start
			end = u.end
		}
	}
	if free := fsize - covered; free > 0 {
		r.Leaks += int((free + s.grainBytes - 1) / s.grainBytes)
	}
	return nil
}
