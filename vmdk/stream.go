package vmdk

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zlib"

	"github.com/blocklayer/blocklayer/blockio"
)

// streamWriter produces a stream-optimized extent append-only, in the
// layout VMware's tools write: header (gdOffset = GD_AT_END), embedded
// descriptor, then for each 32 MiB grain-table region its compressed
// grains (grain marker + zlib data, sector padded) followed by a GT marker
// and the grain table, then a GD marker and the grain directory, a footer
// marker and the footer (the header with the real gdOffset) and the
// end-of-stream marker.
//
// Grains are compressed by a pool of goroutines and appended in guest
// order by one writer goroutine. Writes must come in increasing offset
// order (a write may not touch a grain before the one the previous write
// ended in); all-zero grains are not stored. Concurrent writers are
// serialized, but only in-order writes succeed.
type streamWriter struct {
	dev        blockio.Device
	hdr        sparseHeader
	capacity   int64 // bytes
	grainBytes int64
	gtes       int64
	level      int

	// producer state, guarded by pmu
	pmu    sync.Mutex
	cur    int64 // grain being assembled, -1 none
	buf    []byte
	dirty  bool
	jobs   chan *grainJob
	order  chan *grainJob
	wg     sync.WaitGroup // workers
	wdone  chan struct{}  // writer goroutine finished
	errMu  sync.Mutex
	err    error
	closed bool

	// writer goroutine state
	pos     int64 // file offset of wbuf[0]
	wbuf    []byte
	curGT   int64
	gt      []uint32
	gtUsed  bool
	gd      []uint32
	devSize int64
}

type grainJob struct {
	grain int64
	data  []byte
	out   []byte
	err   error
	done  chan struct{}
}

var (
	grainPool = sync.Pool{New: func() any { return make([]byte, 64<<10) }}
	outPool   sync.Pool // compressed grain buffers
)

func newStreamWriter(dev blockio.Device, hdr sparseHeader, workers, level int) *streamWriter {
	if workers <= 0 {
		workers = max(2, runtime.GOMAXPROCS(0))
	}
	s := &streamWriter{
		dev: dev, hdr: hdr, capacity: int64(hdr.Capacity) * sectorSize,
		grainBytes: int64(hdr.GrainSize) * sectorSize, gtes: int64(hdr.NumGTEsPerGT),
		level: level, cur: -1,
		jobs: make(chan *grainJob, 4*workers), order: make(chan *grainJob, 4*workers),
		wdone: make(chan struct{}),
		pos:   int64(hdr.OverHead) * sectorSize, curGT: -1, devSize: dev.Size(),
	}
	s.buf = make([]byte, s.grainBytes)
	gdEntries := (int64(hdr.Capacity) + s.gtes*int64(hdr.GrainSize) - 1) / (s.gtes * int64(hdr.GrainSize))
	s.gd = make([]uint32, gdEntries)
	s.gt = make([]uint32, s.gtes)
	for range workers {
		s.wg.Add(1)
		go s.worker()
	}
	go s.writer()
	return s
}

func (s *streamWriter) setErr(err error) {
	s.errMu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.errMu.Unlock()
}

func (s *streamWriter) getErr() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

func (s *streamWriter) worker() {
	defer s.wg.Done()
	var out bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&out, s.level)
	for j := range s.jobs {
		out.Reset()
		out.Write(make([]byte, grainMarkerSize)) // room for the marker
		zw.Reset(&out)
		_, err := zw.Write(j.data)
		if err == nil {
			err = zw.Close()
		}
		j.err = err
		n := out.Len()
		padded := (n + sectorSize - 1) / sectorSize * sectorSize
		var o []byte
		if v, ok := outPool.Get().([]byte); ok && cap(v) >= padded {
			o = v[:padded]
			clear(o[n:])
		} else {
			o = make([]byte, padded, max(padded, 66<<10))
		}
		copy(o, out.Bytes())
		putGrainMarker(o, uint64(j.grain*s.grainBytes/sectorSize), uint32(n-grainMarkerSize))
		j.out = o
		if int64(cap(j.data)) == 64<<10 {
			grainPool.Put(j.data[:cap(j.data)])
		}
		j.data = nil
		close(j.done)
	}
}

// writer appends compressed grains in order and emits grain tables.
func (s *streamWriter) writer() {
	defer close(s.wdone)
	for j := range s.order {
		<-j.done
		if s.getErr() != nil {
			continue
		}
		if j.err != nil {
			s.setErr(j.err)
			continue
		}
		gi := j.grain / s.gtes
		if gi != s.curGT {
			if err := s.emitGT(); err != nil {
				s.setErr(err)
				continue
			}
			s.curGT = gi
		}
		sec := (s.pos + int64(len(s.wbuf))) / sectorSize
		if sec >= maxExtentSectors {
			s.setErr(&blockio.UnsupportedError{Feature: "stream-optimized extent larger than 2 TiB"})
			continue
		}
		s.gt[j.grain%s.gtes] = uint32(sec)
		s.gtUsed = true
		if err := s.appendBytes(j.out); err != nil {
			s.setErr(err)
		}
		outPool.Put(j.out[:0])
		j.out = nil
	}
}

// appendBytes queues b (a multiple of the sector size) for writing.
func (s *streamWriter) appendBytes(b []byte) error {
	s.wbuf = append(s.wbuf, b...)
	if len(s.wbuf) >= 1<<20 {
		return s.flushBuf()
	}
	return nil
}

func (s *streamWriter) flushBuf() error {
	if len(s.wbuf) == 0 {
		return nil
	}
	end := s.pos + int64(len(s.wbuf))
	if end > s.devSize {
		grow := max(end, s.devSize+64<<20)
		if err := blockio.Truncate(s.dev, grow, blockio.PreallocOff); err != nil {
			return err
		}
		s.devSize = grow
	}
	if _, err := s.dev.WriteAt(s.wbuf, s.pos); err != nil {
		return err
	}
	s.pos = end
	s.wbuf = s.wbuf[:0]
	return nil
}

// emitGT writes the current grain table (if it has entries) after its
// grains: GT marker, then the table; the GD entry points past the marker.
func (s *streamWriter) emitGT() error {
	if s.curGT < 0 || !s.gtUsed {
		return nil
	}
	gtSec := (s.gtes*4 + sectorSize - 1) / sectorSize
	if err := s.appendBytes(metadataMarker(uint64(gtSec), markerGT)); err != nil {
		return err
	}
	sec := (s.pos + int64(len(s.wbuf))) / sectorSize
	b := make([]byte, gtSec*sectorSize)
	for i, v := range s.gt {
		binary.LittleEndian.PutUint32(b[4*i:], v)
	}
	s.gd[s.curGT] = uint32(sec)
	clear(s.gt)
	s.gtUsed = false
	return s.appendBytes(b)
}

// writeAt accepts guest data in increasing order.
func (s *streamWriter) writeAt(p []byte, off int64) (int, error) {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if s.closed {
		return 0, blockio.ErrClosed
	}
	if err := s.getErr(); err != nil {
		return 0, err
	}
	done := 0
	for done < len(p) {
		g := off / s.grainBytes
		in := off % s.grainBytes
		if g < s.cur {
			return done, &blockio.UnsupportedError{Feature: "non-sequential write to a stream-optimized vmdk (offsets must increase grain by grain)"}
		}
		if g > s.cur {
			if err := s.finishGrain(); err != nil {
				return done, err
			}
			s.cur = g
		}
		n := copy(s.buf[in:], p[done:])
		s.dirty = true
		done += n
		off += int64(n)
	}
	return done, nil
}

func (s *streamWriter) writeZeroes(off, n int64) error {
	for n > 0 {
		l := min(n, int64(len(zeroBuf)))
		if _, err := s.writeAt(zeroBuf[:l], off); err != nil { // zero grains are dropped
			return err
		}
		off += l
		n -= l
	}
	return nil
}

// finishGrain submits the current grain for compression unless it is all
// zeros.
func (s *streamWriter) finishGrain() error {
	if s.cur < 0 || !s.dirty {
		return nil
	}
	defer func() {
		clear(s.buf)
		s.dirty = false
	}()
	if blockio.IsZero(s.buf) {
		return nil
	}
	data := grainPool.Get().([]byte)
	if int64(len(data)) != s.grainBytes {
		data = make([]byte, s.grainBytes)
	}
	copy(data, s.buf)
	j := &grainJob{grain: s.cur, data: data, done: make(chan struct{})}
	s.order <- j
	s.jobs <- j
	return s.getErr()
}

func (s *streamWriter) flush() error {
	if err := s.getErr(); err != nil {
		return err
	}
	return s.dev.Flush()
}

// finish writes the trailing metadata and closes the pipeline.
func (s *streamWriter) finish() error {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if s.closed {
		return s.getErr()
	}
	s.closed = true
	err := s.finishGrain()
	close(s.jobs)
	close(s.order)
	s.wg.Wait()
	<-s.wdone
	if err != nil {
		return err
	}
	if err := s.getErr(); err != nil {
		return err
	}
	if err := s.emitGT(); err != nil {
		return err
	}
	gdSec := (int64(len(s.gd))*4 + sectorSize - 1) / sectorSize
	if err := s.appendBytes(metadataMarker(uint64(gdSec), markerGD)); err != nil {
		return err
	}
	gdStart := (s.pos + int64(len(s.wbuf))) / sectorSize
	b := make([]byte, gdSec*sectorSize)
	for i, v := range s.gd {
		binary.LittleEndian.PutUint32(b[4*i:], v)
	}
	if err := s.appendBytes(b); err != nil {
		return err
	}
	if err := s.appendBytes(metadataMarker(1, markerFooter)); err != nil {
		return err
	}
	footer := s.hdr
	footer.GDOffset = uint64(gdStart)
	if err := s.appendBytes(footer.marshal()); err != nil {
		return err
	}
	if err := s.appendBytes(make([]byte, sectorSize)); err != nil { // EOS
		return err
	}
	if err := s.flushBuf(); err != nil {
		return err
	}
	if s.devSize != s.pos {
		if err := blockio.Truncate(s.dev, s.pos, blockio.PreallocOff); err != nil {
			return err
		}
		s.devSize = s.pos
	}
	return s.dev.Flush()
}
