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
	if err := blockio.CheckRange("read", off, int64(len(p)), img.size); err != nil {
		return 0, err
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		chunk := p[done:min(len(p), done+int(img.cs-pos&(img.cs-1)))]
		sh := img.shard(pos)
		sh.RLock()
		err := img.readCluster(chunk, pos)
		sh.RUnlock()
		if err != nil {
			return done, err
		}
		done += len(chunk)
	}
	return done, nil
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
			if len(q) == int(img.cs) {
				if err := img.readCompressed(q, m.entry); err != nil {
					return err
				}
			} else {
				bp := img.getBuf()
				err := img.readCompressed(*bp, m.entry)
				if err == nil {
					copy(q, (*bp)[off&(img.cs-1):])
				}
				img.putBuf(bp)
				if err != nil {
					return err
				}
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
