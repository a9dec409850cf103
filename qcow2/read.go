package qcow2

import (
	"sync"

	"github.com/blocklayer/blocklayer/blockio"
)

func (img *Image) shard(off int64) *sync.RWMutex {
	return &img.shards[(off>>img.cbits)&(nShards-1)]
}

// ReadAt implements blockio.Device.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	if img.closed.Load() {
		return 0, blockio.ErrClosed
	}
	if err := blockio.CheckRange("read", off, int64(len(p)), img.vsize.Load()); err != nil {
		return 0, err
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		first := pos >> img.cbits
		last := (pos + int64(len(p)-done) - 1) >> img.cbits
		if last == first {
			sh := img.shard(pos)
			sh.RLock()
			err := img.readCluster(p[done:], pos)
			sh.RUnlock()
			if err != nil {
				return done, err
			}
			return len(p), nil
		}
		// Several clusters: map a batch under one pass of the metadata
		// lock and merge contiguous host ranges into single reads.
		last = min(last, first+maxBatch-1)
		end := min(int64(len(p)), (last+1)<<img.cbits-off)
		if err := img.readBatch(p[done:end], pos, first, last); err != nil {
			return done, err
		}
		done = int(end)
	}
	return done, nil
}

const maxBatch = 64 // clusters per batched read (< nShards)

type readSeg struct {
	kind  kind
	host  int64
	off   int64 // guest offset
	n     int64
	entry uint64
}

// lockShards read-locks the shards of clusters first..last in ascending
// shard order (the order every multi-shard locker uses).
func (img *Image) lockShards(first, last int64, lock bool) {
	lo, hi := first&(nShards-1), last&(nShards-1)
	if lo <= hi {
		for i := lo; i <= hi; i++ {
			img.lockShard(i, lock)
		}
		return
	}
	for i := int64(0); i <= hi; i++ {
		img.lockShard(i, lock)
	}
	for i := lo; i < nShards; i++ {
		img.lockShard(i, lock)
	}
}

func (img *Image) lockShard(i int64, lock bool) {
	if lock {
		img.shards[i].RLock()
	} else {
		img.shards[i].RUnlock()
	}
}

func (img *Image) readBatch(p []byte, off, first, last int64) error {
	img.lockShards(first, last, true)
	defer img.lockShards(first, last, false)
	var segs [2 * maxBatch]readSeg
	ns := 0
	img.mu.Lock()
	for pos, end := off, off+int64(len(p)); pos < end; {
		m, err := img.lookupLocked(pos, end-pos)
		if err != nil {
			img.mu.Unlock()
			return err
		}
		k := m.kind
		if k == kUnallocAlloc {
			k = kUnalloc
		}
		if k == kZeroAlloc {
			k = kZeroPlain
		}
		if ns > 0 {
			prev := &segs[ns-1]
			if prev.kind == k && k != kCompressed && (k != kNormal || prev.host+prev.n == m.host) {
				prev.n += m.n
				pos += m.n
				continue
			}
		}
		if ns == len(segs) {
			img.mu.Unlock()
			// Too fragmented for one batch: fall back to per-cluster reads.
			for c := first; c <= last; c++ {
				a := max(off, c<<img.cbits)
				b := min(end, (c+1)<<img.cbits)
				if err := img.readCluster(p[a-off:b-off], a); err != nil {
					return err
				}
			}
			return nil
		}
		segs[ns] = readSeg{kind: k, host: m.host, off: pos, n: m.n, entry: m.entry}
		ns++
		pos += m.n
	}
	img.mu.Unlock()
	for _, sg := range segs[:ns] {
		q := p[sg.off-off : sg.off-off+sg.n]
		switch sg.kind {
		case kUnalloc:
			if err := img.readBacking(q, sg.off); err != nil {
				return err
			}
		case kZeroPlain:
			clear(q)
		case kNormal:
			if _, err := img.data.ReadAt(q, sg.host); err != nil {
				return err
			}
		case kCompressed:
			if err := img.readCompressedPart(q, sg.off, sg.entry); err != nil {
				return err
			}
		}
	}
	return nil
}

// readCompressedPart reads q at guest offset off from the compressed
// cluster described by entry.
func (img *Image) readCompressedPart(q []byte, off int64, entry uint64) error {
	if len(q) == int(img.cs) {
		return img.readCompressed(q, entry)
	}
	bp := img.getBuf()
	defer img.putBuf(bp)
	if err := img.readCompressed(*bp, entry); err != nil {
		return err
	}
	copy(q, (*bp)[off&(img.cs-1):])
	return nil
}

// readCluster reads p (within one guest cluster) at guest offset off. The
// caller holds the cluster's shard lock.
func (img *Image) readCluster(p []byte, off int64) error {
	for len(p) > 0 {
		img.mu.Lock()
		m, err := img.lookupLocked(off, int64(len(p)))
		img.mu.Unlock()
		if err != nil {
			return err
		}
		q := p[:m.n]
		switch m.kind {
		case kUnalloc, kUnallocAlloc:
			if err := img.readBacking(q, off); err != nil {
				return err
			}
		case kZeroPlain, kZeroAlloc:
			clear(q)
		case kNormal:
			if _, err := img.data.ReadAt(q, m.host); err != nil {
				return err
			}
		case kCompressed:
			if err := img.readCompressedPart(q, off, m.entry); err != nil {
				return err
			}
		}
		p = p[m.n:]
		off += m.n
	}
	return nil
}

// readBacking reads guest range [off, off+len(p)) from the backing file;
// bytes past its end (or without one) read as zeros.
func (img *Image) readBacking(p []byte, off int64) error {
	if img.backing == nil {
		clear(p)
		return nil
	}
	bs := img.backing.Size()
	n := int64(len(p))
	if off >= bs {
		clear(p)
		return nil
	}
	if off+n > bs {
		clear(p[bs-off:])
		p = p[:bs-off]
	}
	_, err := img.backing.ReadAt(p, off)
	return err
}
