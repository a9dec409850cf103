package vmdk

import (
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zlib"

	"github.com/blocklayer/blocklayer/blockio"
)

// Grain table entry kinds.
const (
	gteUnallocated = 0
	gteZero        = 1 // only when the extent has the zeroed-grain flag
)

// sparseExtent is a hosted sparse (KDMV) or COWD extent. Its grain
// directory is kept in memory; grain tables are cached (bounded).
// Safe for concurrent use: metadata is guarded by mu, data I/O happens
// outside the lock, and allocations of one grain are serialized through
// the pending map.
type sparseExtent struct {
	dev        blockio.Device
	readOnly   bool
	cowd       bool
	version    uint32
	grainSec   int64
	grainBytes int64
	gtes       int64 // entries per GT
	gtBytes    int64
	capacity   int64 // sectors
	gdEntries  int64
	gdOff      int64 // bytes
	rgdOff     int64 // bytes, 0 when there is no redundant GD
	overhead   int64 // sectors
	compressed bool
	markers    bool
	zeroGrain  bool

	mu        sync.Mutex
	flushMu   sync.Mutex // serializes flushMeta
	gd, rgd   []uint32
	cache     map[uint32][]uint32
	dirty     map[uint32]bool // tables with entries not yet on disk
	flushing  map[uint32]int  // tables flushMeta is writing: not evictable
	newGD     map[uint32]bool // directory entries not yet on disk
	cacheMax  int
	evictions uint64 // tables evicted so far (see gtShared)
	nextSec   int64
	pending   map[int64]chan struct{}

	lastMu   sync.Mutex
	lastIdx  int64 // grain index of last decompressed grain, -1
	lastData []byte
}

// sparseLimits are open-time resource limits.
type sparseLimits struct {
	maxMeta int64  // bytes allowed for GD copies of the whole image
	used    *int64 // bytes already charged by other extents (may be nil)
}

// charge reserves n bytes of metadata memory, failing when the image's
// total would exceed maxMeta. Extents named many times by a descriptor
// thus cannot multiply the memory a small file makes us allocate.
func (l sparseLimits) charge(n int64) bool {
	if l.maxMeta <= 0 {
		return true
	}
	var used int64
	if l.used != nil {
		used = *l.used
	}
	if n > l.maxMeta-used {
		return false
	}
	if l.used != nil {
		*l.used = used + n
	}
	return true
}

// gtCacheBytes is the default grain-table cache size of one extent.
const gtCacheBytes = 16 << 20

// openSparse opens a sparse extent on dev whose first sector is hdrBuf.
func openSparse(dev blockio.Device, hdrBuf []byte, readOnly bool, lim sparseLimits) (*sparseExtent, *sparseHeader, error) {
	fsize := dev.Size()
	if binary.LittleEndian.Uint32(hdrBuf) == magicCOWD {
		return openCOWD(dev, hdrBuf, readOnly, lim)
	}
	h, err := parseSparseHeader(hdrBuf, 0)
	if err != nil {
		return nil, nil, err
	}
	if h.GDOffset == gdAtEnd {
		// Stream-optimized image written by VMware: the real header is the
		// footer, 1536 bytes before the end (footer marker, footer, EOS).
		if fsize < 1536+headerSize {
			return nil, nil, blockio.Corruptf("vmdk footer", -1, "file too short for a footer")
		}
		buf := make([]byte, 1536)
		if _, err := dev.ReadAt(buf, fsize-1536); err != nil {
			return nil, nil, err
		}
		le := binary.LittleEndian
		if le.Uint32(buf[8:]) != 0 || le.Uint32(buf[12:]) != markerFooter ||
			le.Uint32(buf[1024+8:]) != 0 || le.Uint32(buf[1024+12:]) != markerEOS {
			return nil, nil, blockio.Corruptf("vmdk footer", fsize-1536, "missing footer or end-of-stream marker")
		}
		f, err := parseSparseHeader(buf[512:1024], fsize-1024)
		if err != nil {
			return nil, nil, err
		}
		if f.GDOffset == gdAtEnd {
			return nil, nil, blockio.Corruptf("vmdk footer", fsize-1024, "footer has no grain directory offset")
		}
		h = f
	}
	if h.Version > 3 {
		return nil, nil, &blockio.UnsupportedError{Feature: fmt.Sprintf("VMDK version %d", h.Version)}
	}
	compressed := h.CompressAlgorithm == compressDeflate
	if h.CompressAlgorithm > compressDeflate {
		return nil, nil, &blockio.UnsupportedError{Feature: fmt.Sprintf("VMDK compression algorithm %d", h.CompressAlgorithm)}
	}
	if h.Version == 3 && !compressed && !readOnly {
		return nil, nil, &blockio.UnsupportedError{Feature: "writing VMDK version 3 (changed-block tracking); open read-only"}
	}
	if h.NumGTEsPerGT == 0 || h.NumGTEsPerGT > maxGTEsPerGT {
		return nil, nil, blockio.Corruptf("vmdk sparse header", 44, "L2 table size too big (%d entries per grain table)", h.NumGTEsPerGT)
	}
	if h.GrainSize == 0 || h.GrainSize > maxGrainSectors {
		return nil, nil, blockio.Corruptf("vmdk sparse header", 20, "invalid granularity %d sectors, image may be corrupt", h.GrainSize)
	}
	s := &sparseExtent{
		dev: dev, readOnly: readOnly || compressed, version: h.Version,
		grainSec: int64(h.GrainSize), grainBytes: int64(h.GrainSize) * sectorSize,
		gtes: int64(h.NumGTEsPerGT), gtBytes: int64(h.NumGTEsPerGT) * 4,
		overhead:   int64(min(h.OverHead, 1<<40)),
		compressed: compressed, markers: h.Flags&flagMarker != 0, zeroGrain: h.Flags&flagZeroGrain != 0,
	}
	if h.Capacity > 1<<50 {
		return nil, nil, blockio.Corruptf("vmdk sparse header", 12, "L1 size too big (capacity %d sectors)", h.Capacity)
	}
	s.capacity = int64(h.Capacity)
	gdEntries := (s.capacity + s.gtes*s.grainSec - 1) / (s.gtes * s.grainSec)
	if gdEntries > maxGDEntries {
		return nil, nil, blockio.Corruptf("vmdk sparse header", 12, "L1 size too big (%d grain directory entries)", gdEntries)
	}
	s.gdEntries = gdEntries
	if h.nlBad {
		return nil, nil, blockio.Corruptf("vmdk sparse header", 73, "new-line detection bytes damaged (file transferred in text mode?)")
	}
	if s.overhead*sectorSize > fsize && h.GDOffset != gdAtEnd {
		return nil, nil, blockio.Corruptf("vmdk sparse extent", -1, "File truncated, expecting at least %d bytes", s.overhead*sectorSize)
	}
	if h.GDOffset > 1<<40 || (h.Flags&flagRGD != 0 && h.RGDOffset > 1<<40) {
		return nil, nil, blockio.Corruptf("vmdk sparse header", 56, "grain directory offset out of range")
	}
	s.gdOff = int64(h.GDOffset) * sectorSize
	if h.Flags&flagRGD != 0 && h.RGDOffset != 0 {
		s.rgdOff = int64(h.RGDOffset) * sectorSize
	}
	if err := s.loadGD(lim); err != nil {
		return nil, nil, err
	}
	return s, &h, nil
}

func openCOWD(dev blockio.Device, hdrBuf []byte, readOnly bool, lim sparseLimits) (*sparseExtent, *sparseHeader, error) {
	h, err := parseCOWDHeader(hdrBuf)
	if err != nil {
		return nil, nil, err
	}
	if h.GrainSize == 0 || h.GrainSize > maxGrainSectors {
		return nil, nil, blockio.Corruptf("vmdk COWD header", 16, "invalid granularity %d sectors", h.GrainSize)
	}
	if h.GDEntries > maxGDEntries {
		return nil, nil, blockio.Corruptf("vmdk COWD header", 24, "L1 size too big (%d entries)", h.GDEntries)
	}
	s := &sparseExtent{
		dev: dev, readOnly: readOnly, cowd: true, version: h.Version,
		grainSec: int64(h.GrainSize), grainBytes: int64(h.GrainSize) * sectorSize,
		gtes: cowdGTEs, gtBytes: cowdGTEs * 4, capacity: int64(h.Capacity),
		gdEntries: int64(h.GDEntries), gdOff: int64(h.GDOffset) * sectorSize, overhead: 1,
	}
	need := (s.capacity + s.gtes*s.grainSec - 1) / (s.gtes * s.grainSec)
	if need > s.gdEntries {
		return nil, nil, blockio.Corruptf("vmdk COWD header", 24, "grain directory has %d entries, capacity needs %d", s.gdEntries, need)
	}
	if err := s.loadGD(lim); err != nil {
		return nil, nil, err
	}
	sh := &sparseHeader{Version: h.Version, Capacity: uint64(h.Capacity), GrainSize: uint64(h.GrainSize), NumGTEsPerGT: cowdGTEs}
	return s, sh, nil
}

func (s *sparseExtent) loadGD(lim sparseLimits) error {
	fsize := s.dev.Size()
	gdBytes := s.gdEntries * 4
	copies := int64(1)
	if s.rgdOff != 0 {
		copies = 2
	}
	read := func(off int64, what string) ([]uint32, error) {
		if off < 0 || off+gdBytes > fsize {
			return nil, blockio.Corruptf(what, off, "%d entries extend beyond the end of the file (%d bytes)", s.gdEntries, fsize)
		}
		if !lim.charge(gdBytes) {
			return nil, blockio.Corruptf(what, off, "L1 size too big: %d bytes exceed the metadata memory limit %d", gdBytes*copies, lim.maxMeta)
		}
		buf := make([]byte, gdBytes)
		if _, err := s.dev.ReadAt(buf, off); err != nil {
			return nil, err
		}
		gd := make([]uint32, s.gdEntries)
		for i := range gd {
			gd[i] = binary.LittleEndian.Uint32(buf[4*i:])
		}
		return gd, nil
	}
	var err error
	if s.gd, err = read(s.gdOff, "vmdk grain directory"); err != nil {
		return err
	}
	if s.rgdOff != 0 {
		if s.rgd, err = read(s.rgdOff, "vmdk redundant grain directory"); err != nil {
			if s.readOnly {
				s.rgd, s.rgdOff = nil, 0 // reading needs only the primary copy
			} else {
				return err
			}
		}
	}
	s.cache = make(map[uint32][]uint32)
	s.dirty = make(map[uint32]bool)
	s.flushing = make(map[uint32]int)
	s.newGD = make(map[uint32]bool)
	s.cacheMax = max(16, int(gtCacheBytes/s.gtBytes))
	s.nextSec = (fsize/sectorSize + s.grainSec - 1) / s.grainSec * s.grainSec
	s.pending = make(map[int64]chan struct{})
	s.lastIdx = -1
	return nil
}

func (s *sparseExtent) size() int64 { return s.capacity * sectorSize }

// gtLocked returns the grain table for GD index gi (nil if unallocated).
// Caller holds mu, which stays held while a missing table is read.
func (s *sparseExtent) gtLocked(gi int64) ([]uint32, error) {
	t, off, err := s.cachedLocked(gi)
	if t != nil || off < 0 || err != nil {
		return t, err
	}
	bp := gtBufPool.Get().(*[]byte)
	defer gtBufPool.Put(bp)
	buf := growBuf(bp, s.gtBytes)
	if _, err := s.dev.ReadAt(buf, off); err != nil {
		return nil, err
	}
	return s.insertLocked(gi, buf), nil
}

// cachedLocked returns table gi from the cache, or (nil, -1) when it is
// unallocated, or (nil, its host offset) when it must be read.
func (s *sparseExtent) cachedLocked(gi int64) ([]uint32, int64, error) {
	if s.gd[gi] == 0 {
		return nil, -1, nil
	}
	if t, ok := s.cache[uint32(gi)]; ok {
		return t, 0, nil
	}
	off := int64(s.gd[gi]) * sectorSize
	if off+s.gtBytes > s.dev.Size() {
		return nil, 0, blockio.Corruptf("vmdk grain table", off, "grain directory entry %d points beyond the end of the file", gi)
	}
	return nil, off, nil
}

// gtShared is gtLocked for readers: on a cache miss it releases mu while
// the table is read, so other requests on the extent are not held up by
// the I/O. The result is only used if no table left the cache meanwhile
// (one that did may have been rewritten on disk while we read it);
// otherwise the load is redone under the lock. Caller holds mu.
func (s *sparseExtent) gtShared(gi int64) ([]uint32, error) {
	t, off, err := s.cachedLocked(gi)
	if t != nil || off < 0 || err != nil {
		return t, err
	}
	gen := s.evictions
	bp := gtBufPool.Get().(*[]byte)
	defer gtBufPool.Put(bp)
	buf := growBuf(bp, s.gtBytes)
	s.mu.Unlock()
	_, err = s.dev.ReadAt(buf, off)
	s.mu.Lock()
	if t, ok := s.cache[uint32(gi)]; ok {
		return t, nil // loaded (maybe changed) by someone else meanwhile
	}
	if err != nil {
		return nil, err
	}
	if s.evictions != gen {
		return s.gtLocked(gi)
	}
	return s.insertLocked(gi, buf), nil
}

// insertLocked decodes the on-disk table buf into the cache as table gi,
// evicting a clean table when the cache is full (and reusing its memory).
func (s *sparseExtent) insertLocked(gi int64, buf []byte) []uint32 {
	var t []uint32
	if len(s.cache) >= s.cacheMax {
		for k, v := range s.cache { // evict an arbitrary clean table
			// A table flushMeta is writing is clean in memory but not yet
			// on disk: evicting it would re-read stale entries.
			if !s.dirty[k] && s.flushing[k] == 0 {
				delete(s.cache, k)
				s.evictions++
				t = v // nobody keeps a table beyond mu: reuse it
				break
			}
		}
	}
	if int64(len(t)) != s.gtes {
		t = make([]uint32, s.gtes)
	}
	for i := range t {
		t[i] = binary.LittleEndian.Uint32(buf[4*i:])
	}
	s.cache[uint32(gi)] = t
	return t
}

var gtBufPool = sync.Pool{New: func() any { return new([]byte) }}

func growBuf(bp *[]byte, n int64) []byte {
	if int64(cap(*bp)) < n {
		*bp = make([]byte, n)
	}
	return (*bp)[:n]
}

// entries copies the GT entries of grains [g, g+n) (n clipped to the end
// of g's grain table) into dst and returns how many were copied.
func (s *sparseExtent) entries(g int64, n int64, dst []uint32) (int, error) {
	gi := g / s.gtes
	j := g % s.gtes
	n = min(n, s.gtes-j, int64(len(dst)))
	s.mu.Lock()
	defer s.mu.Unlock()
	if gi >= int64(len(s.gd)) {
		return 0, blockio.Corruptf("vmdk grain directory", s.gdOff, "grain %d beyond directory", g)
	}
	t, err := s.gtShared(gi)
	if err != nil {
		return 0, err
	}
	if t == nil {
		clear(dst[:n])
	} else {
		copy(dst[:n], t[j:j+n])
	}
	return int(n), nil
}

// backingFunc reads extent-relative range [off, off+len(p)) from the
// parent image; nil means there is no parent (zeros).
type backingFunc func(p []byte, off int64) error

func (s *sparseExtent) isData(e uint32) bool {
	return e != gteUnallocated && !(e == gteZero && s.zeroGrain)
}

// readAt reads extent-relative [off, off+len(p)).
func (s *sparseExtent) readAt(p []byte, off int64, back backingFunc) error {
	var ents [64]uint32
	for len(p) > 0 {
		g := off / s.grainBytes
		maxG := (off+int64(len(p))-1)/s.grainBytes - g + 1
		cnt, err := s.entries(g, maxG, ents[:])
		if err != nil {
			return err
		}
		for i := 0; i < cnt && len(p) > 0; {
			e := ents[i]
			in := off % s.grainBytes
			// extend the run while the kind (and host contiguity) agrees
			run := 1
			for i+run < cnt && s.sameRun(e, ents[i+run], run) {
				run++
			}
			n := min(int64(len(p)), int64(run)*s.grainBytes-in)
			var err error
			switch {
			case e == gteUnallocated:
				if back != nil {
					err = back(p[:n], off)
				} else {
					clear(p[:n])
				}
			case e == gteZero && s.zeroGrain:
				clear(p[:n])
			case s.compressed:
				// A run of compressed grains, inflated in parallel.
				var jobs []cjob
				n = 0
				for k := i; k < cnt && n < int64(len(p)) && s.isData(ents[k]); k++ {
					gin := (off + n) % s.grainBytes
					l := min(int64(len(p))-n, s.grainBytes-gin)
					jobs = append(jobs, cjob{g: g + int64(k), e: ents[k], in: gin, dst: p[n : n+l]})
					n += l
				}
				run = len(jobs)
				err = s.readCompressedJobs(jobs)
			default:
				err = s.readHost(p[:n], int64(e)*sectorSize+in)
			}
			if err != nil {
				return err
			}
			p = p[n:]
			off += n
			i += run
		}
	}
	return nil
}

func (s *sparseExtent) sameRun(first, next uint32, k int) bool {
	switch {
	case first == gteUnallocated:
		return next == gteUnallocated
	case first == gteZero && s.zeroGrain:
		return next == gteZero
	case s.compressed:
		return false
	default:
		return int64(next) == int64(first)+int64(k)*s.grainSec
	}
}

// readHost reads host bytes, zero-filling beyond the end of the file.
func (s *sparseExtent) readHost(p []byte, host int64) error {
	return readPadded(s.dev, p, host, s.dev.Size())
}

var zlibReaders sync.Pool

// inflateAt inflates src, drops the first skip bytes of the output and
// fills dst with what follows; it returns the bytes stored in dst (fewer
// when the stream is short).
func inflateAt(dst []byte, src []byte, skip int64) (int, error) {
	if skip == 0 {
		return inflateWhole(dst, src)
	}
	br := &byteReader{b: src}
	var zr io.ReadCloser
	if v := zlibReaders.Get(); v != nil {
		zr = v.(io.ReadCloser)
		if err := zr.(zlib.Resetter).Reset(br, nil); err != nil {
			return 0, err
		}
	} else {
		var err error
		if zr, err = zlib.NewReader(br); err != nil {
			return 0, err
		}
	}
	var n int
	var err error
	if skip > 0 {
		var k int64
		k, err = io.CopyN(io.Discard, zr, skip)
		if k < skip && err == io.EOF {
			err = io.ErrUnexpectedEOF // short stream: nothing left for dst
		}
	}
	if err == nil {
		n, err = io.ReadFull(zr, dst)
	}
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil
	}
	zlibReaders.Put(zr)
	return n, err
}

type byteReader struct {
	b []byte
	i int
}

func (r *byteReader) Read(p []byte) (int, error) {
	if r.i >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.i:])
	r.i += n
	return n, nil
}

func (r *byteReader) ReadByte() (byte, error) {
	if r.i >= len(r.b) {
		return 0, io.EOF
	}
	c := r.b[r.i]
	r.i++
	return c, nil
}

// cjob is one compressed grain to inflate into dst.
type cjob struct {
	g   int64
	e   uint32
	in  int64
	dst []byte
}

// readCompressedJobs inflates grains on up to GOMAXPROCS goroutines.
func (s *sparseExtent) readCompressedJobs(jobs []cjob) error {
	if len(jobs) == 1 {
		j := jobs[0]
		return s.readCompressed(j.dst, j.g, j.e, j.in)
	}
	workers := min(len(jobs), runtime.GOMAXPROCS(0))
	var next atomic.Int64
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(len(jobs)) || errs[w] != nil {
					return
				}
				j := jobs[i]
				errs[w] = s.readCompressed(j.dst, j.g, j.e, j.in)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// readCompressed inflates grain g stored at sector e and copies the part
// starting at in into p. A whole-grain read inflates straight into p.
func (s *sparseExtent) readCompressed(p []byte, g int64, e uint32, in int64) error {
	if in == 0 && int64(len(p)) == s.grainBytes {
		return s.inflateGrain(p, e)
	}
	if s.grainBytes > maxCachedGrain {
		// Huge grains (a hostile header may say 1 GiB): inflate straight
		// into p, discarding the head, instead of buffering the grain.
		return s.inflateGrainAt(p, e, in)
	}
	s.lastMu.Lock()
	if s.lastIdx == g {
		copy(p, s.lastData[in:])
		s.lastMu.Unlock()
		return nil
	}
	s.lastMu.Unlock()
	grain := make([]byte, s.grainBytes)
	if err := s.inflateGrain(grain, e); err != nil {
		return err
	}
	copy(p, grain[in:])
	s.lastMu.Lock()
	s.lastIdx, s.lastData = g, grain
	s.lastMu.Unlock()
	return nil
}

var compPool sync.Pool // *[]byte buffers for compressed grain data

// inflateGrain reads the compressed grain at sector e and inflates it into
// grain (grainBytes long); a short stream leaves the tail zero.
func (s *sparseExtent) inflateGrain(grain []byte, e uint32) error {
	return s.inflateGrainAt(grain, e, 0)
}

// maxCachedGrain is the largest grain a partial compressed read buffers
// whole (and keeps for the next read of the same grain).
const maxCachedGrain = 1 << 20

// inflateGrainAt inflates the compressed grain at sector e, skipping the
// first skip bytes of grain data, into dst; a short stream leaves the tail
// zero.
func (s *sparseExtent) inflateGrainAt(grain []byte, e uint32, skip int64) error {
	host := int64(e) * sectorSize
	fsize := s.dev.Size()
	if host >= fsize {
		return blockio.Corruptf("vmdk compressed grain", host, "beyond the end of the file")
	}
	bp, _ := compPool.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer compPool.Put(bp)
	var data []byte
	if s.markers {
		// Read the marker and, optimistically, a typical grain's worth.
		first := min(s.grainBytes/2+sectorSize, fsize-host)
		if int64(cap(*bp)) < first {
			*bp = make([]byte, first)
		}
		buf := (*bp)[:first]
		if _, err := s.dev.ReadAt(buf, host); err != nil {
			return err
		}
		if len(buf) < grainMarkerSize {
			return blockio.Corruptf("vmdk grain marker", host, "truncated")
		}
		size := int64(binary.LittleEndian.Uint32(buf[8:]))
		if size == 0 || size > 2*s.grainBytes {
			return blockio.Corruptf("vmdk grain marker", host, "invalid compressed size %d", size)
		}
		if host+grainMarkerSize+size > fsize {
			return blockio.Corruptf("vmdk compressed grain", host, "data extends beyond the end of the file")
		}
		total := grainMarkerSize + size
		if total > first {
			if int64(cap(*bp)) < total {
				nb := make([]byte, total)
				copy(nb, buf)
				*bp = nb
			}
			buf = (*bp)[:total]
			if _, err := s.dev.ReadAt(buf[first:], host+first); err != nil {
				return err
			}
		}
		data = buf[grainMarkerSize:total]
	} else {
		n := min(2*s.grainBytes, fsize-host)
		if int64(cap(*bp)) < n {
			*bp = make([]byte, n)
		}
		data = (*bp)[:n]
		if _, err := s.dev.ReadAt(data, host); err != nil {
			return err
		}
	}
	k, err := inflateAt(grain, data, skip)
	if err != nil {
		return blockio.Corruptf("vmdk compressed grain", host, "inflate: %v", err)
	}
	clear(grain[k:])
	return nil
}

// statusRun describes the first run of [off, off+n) of uniform kind.
type statusRun struct {
	length int64
	kind   int // 0 unallocated, 1 zero, 2 data
	host   int64
}

func (s *sparseExtent) status(off, n int64) (statusRun, error) {
	var ents [512]uint32
	var r statusRun
	add := func(l int64, k int, host int64) bool {
		if r.length == 0 {
			r = statusRun{length: l, kind: k, host: host}
			return true
		}
		if k != r.kind || (r.host >= 0) != (host >= 0) || (host >= 0 && host != r.host+r.length) {
			return false
		}
		r.length += l
		return true
	}
	for n > 0 {
		g := off / s.grainBytes
		gi := g / s.gtes
		s.mu.Lock()
		unallocGT := gi < int64(len(s.gd)) && s.gd[gi] == 0
		s.mu.Unlock()
		if unallocGT {
			// A whole grain table's range is unallocated.
			l := min(n, (gi+1)*s.gtes*s.grainBytes-off)
			if !add(l, 0, -1) {
				return r, nil
			}
			off += l
			n -= l
			continue
		}
		cnt, err := s.entries(g, (off+n-1)/s.grainBytes-g+1, ents[:])
		if err != nil {
			return r, err
		}
		for i := 0; i < cnt && n > 0; i++ {
			e := ents[i]
			in := off % s.grainBytes
			k := 2
			host := int64(-1)
			switch {
			case e == gteUnallocated:
				k = 0
			case e == gteZero && s.zeroGrain:
				k = 1
			case !s.compressed:
				host = int64(e)*sectorSize + in
			}
			l := min(n, s.grainBytes-in)
			if !add(l, k, host) {
				return r, nil
			}
			off += l
			n -= l
		}
	}
	return r, nil
}
