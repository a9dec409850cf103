package vmdk

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/blocklayer/blocklayer/blockio"
)

// DefaultMaxMetadataMemory is the default cap on grain-directory memory.
const DefaultMaxMetadataMemory = 256 << 20

// maxChainDepth bounds parent chains.
const maxChainDepth = 64

// Options controls how an image is opened (a plain value, copied by Open). The zero value opens read-write,
// confines extent files to the image's directory, resolves relative names
// against the image's directory and opens parents read-only.
type Options struct {
	// ReadOnly opens the image and every extent read-only.
	ReadOnly bool
	// AllowUnsafePaths permits extent file names that are absolute or climb
	// out of the descriptor's directory ("../x"). Off by default: an
	// untrusted descriptor could otherwise expose any host file as guest
	// data.
	AllowUnsafePaths bool
	// MaxMetadataMemory caps the memory for the grain directories of all
	// extents of the image together (0 = DefaultMaxMetadataMemory); what
	// they leave is shared among the extents' grain-table caches (up to
	// 16 MiB each). A parent image has a budget of its own.
	MaxMetadataMemory int64
	// Dir is the directory against which extent and parent file names are
	// resolved. OpenFile sets it to the file's directory when empty; for
	// Open, empty means the current directory.
	Dir string
	// Filename names the image in Info (OpenFile sets it to the path).
	Filename string
	// FileOpener opens extent and descriptor-referenced files. nil means
	// OS files.
	FileOpener func(path string, readOnly bool) (blockio.Device, error)
	// ParentOpener opens the parent named by parentFileNameHint (a path
	// resolved against Dir). nil opens it with OpenFile (a VMDK; raw when
	// the file is not a VMDK) read-only, with loop detection.
	ParentOpener func(path string, readOnly bool) (blockio.Device, error)
	// NoParent skips opening the parent: unallocated grains read as zeros.
	NoParent bool

	chain map[string]bool // paths of images already open in this chain
}

func (o *Options) open(path string, ro bool) (blockio.Device, error) {
	if o.FileOpener != nil {
		return o.FileOpener(path, ro)
	}
	return defaultOpen(path, ro)
}

// defaultOpen opens an OS file with QEMU-compatible locking.
func defaultOpen(path string, readOnly bool) (blockio.Device, error) {
	return blockio.OpenFile(path, blockio.FileOptions{ReadOnly: readOnly})
}

// OpenFile opens the VMDK at path (a descriptor, a monolithic sparse or
// stream-optimized file, or a bare sparse extent). The returned Image owns
// all files it opened.
func OpenFile(path string, opts Options) (*Image, error) {
	if opts.Filename == "" {
		opts.Filename = path
	}
	if opts.Dir == "" {
		opts.Dir = filepath.Dir(path)
	}
	if opts.chain == nil {
		opts.chain = map[string]bool{}
	}
	key := chainKey(path)
	if opts.chain[key] {
		return nil, blockio.Corruptf("vmdk parent chain", -1, "loop: %s is already part of the chain", path)
	}
	if len(opts.chain) >= maxChainDepth {
		return nil, blockio.Corruptf("vmdk parent chain", -1, "chain longer than %d images", maxChainDepth)
	}
	chain := make(map[string]bool, len(opts.chain)+1)
	for k := range opts.chain {
		chain[k] = true
	}
	chain[key] = true
	opts.chain = chain
	dev, err := opts.open(path, opts.ReadOnly)
	if err != nil {
		return nil, err
	}
	img, err := Open(dev, opts)
	if err != nil {
		dev.Close()
		return nil, err
	}
	return img, nil
}

func chainKey(path string) string {
	if p, err := filepath.EvalSymlinks(path); err == nil {
		path = p
	}
	if p, err := filepath.Abs(path); err == nil {
		path = p
	}
	return path
}

// Open opens a VMDK whose first file is dev: a text descriptor, a
// monolithic sparse / stream-optimized file, or a bare sparse extent.
// Extent files named by a descriptor are resolved against opts.Dir and
// opened with opts.FileOpener. On success the Image owns dev and closes it
// in Close; on error the caller still owns dev.
func Open(dev blockio.Device, opts Options) (*Image, error) {
	if opts.MaxMetadataMemory <= 0 {
		opts.MaxMetadataMemory = DefaultMaxMetadataMemory
	}
	img := &Image{opts: opts, readOnly: opts.ReadOnly, filename: opts.Filename}
	if err := img.open(dev); err != nil {
		img.closeExtents(dev)
		return nil, err
	}
	return img, nil
}

func (img *Image) open(dev blockio.Device) error {
	fsize := dev.Size()
	if fsize < 4 {
		return blockio.Corruptf("vmdk file", 0, "file too short (%d bytes)", fsize)
	}
	hdr := make([]byte, min(fsize, headerSize))
	if _, err := dev.ReadAt(hdr, 0); err != nil {
		return err
	}
	if !isSparseMagic(hdr) {
		img.descDev = dev
		img.descStandalone = true
		if fsize > maxDescriptor {
			return blockio.Corruptf("vmdk descriptor", 0, "descriptor file too large (%d bytes)", fsize)
		}
		text := make([]byte, fsize)
		if _, err := dev.ReadAt(text, 0); err != nil {
			return err
		}
		return img.openDescriptor(text, true)
	}
	if len(hdr) < headerSize {
		return blockio.Corruptf("vmdk sparse header", 0, "truncated (%d bytes)", len(hdr))
	}
	lim := img.limits()
	if isKDMV(hdr) {
		h, err := parseSparseHeader(hdr, 0)
		if err != nil {
			return err
		}
		if h.Capacity == 0 && h.DescOffset != 0 {
			// A wrapper: the embedded descriptor names the real extents.
			text, err := readEmbedded(dev, &h)
			if err != nil {
				return err
			}
			img.descDev, img.descOff, img.descCap = dev, int64(h.DescOffset)*sectorSize, int64(h.DescSize)*sectorSize
			return img.openDescriptor(text, true)
		}
	}
	sp, h, err := openSparse(dev, hdr, img.readOnly, lim)
	if err != nil {
		return err
	}
	var d *Descriptor
	if !sp.cowd && h.DescOffset != 0 && h.DescSize != 0 {
		text, err := readEmbedded(dev, h)
		if err != nil {
			return err
		}
		if dd, err := ParseDescriptor(text); err == nil {
			d = dd
			img.descDev, img.descOff, img.descCap = dev, int64(h.DescOffset)*sectorSize, int64(h.DescSize)*sectorSize
		} else if !blockio.IsZero(text) {
			return err
		}
	}
	if d == nil {
		d = &Descriptor{Version: 1, ParentCID: noParentCID, CreateType: "monolithicSparse"}
		if sp.cowd {
			d.CreateType = "vmfsSparse"
		}
	}
	img.desc = d
	img.extents = []*extent{{
		start: 0, size: sp.size(), kind: kindSparse, access: "RW", file: img.filename,
		dev: dev, sp: sp, readOnly: sp.readOnly,
	}}
	if sp.compressed {
		img.streamRO = true
	}
	img.size = sp.size()
	img.sizeCaches()
	return img.openParent()
}

func isKDMV(b []byte) bool { return len(b) >= 4 && string(b[:4]) == "KDMV" }
func isSparseMagic(b []byte) bool {
	return len(b) >= 4 && (string(b[:4]) == "KDMV" || string(b[:4]) == "COWD")
}

func readEmbedded(dev blockio.Device, h *sparseHeader) ([]byte, error) {
	if h.DescOffset > 1<<40 || h.DescSize > 1<<40 {
		return nil, blockio.Corruptf("vmdk sparse header", 28, "descriptor offset/size out of range")
	}
	off := int64(h.DescOffset) * sectorSize
	n := min(int64(h.DescSize)*sectorSize, maxDescriptor)
	fsize := dev.Size()
	if off >= fsize {
		return nil, blockio.Corruptf("vmdk embedded descriptor", off, "beyond the end of the file")
	}
	n = min(n, fsize-off)
	text := make([]byte, n)
	if _, err := dev.ReadAt(text, off); err != nil {
		return nil, err
	}
	return text, nil
}

// standalone createTypes QEMU accepts in a descriptor file, plus custom.
var standaloneTypes = map[string]bool{
	"monolithicFlat": true, "vmfs": true, "vmfsSparse": true, "vmfsThin": true,
	"twoGbMaxExtentSparse": true, "twoGbMaxExtentFlat": true, "custom": true, "seSparse": true,
	"monolithicSparse": true, "streamOptimized": true,
}

func (img *Image) openDescriptor(text []byte, standalone bool) error {
	d, err := ParseDescriptor(text)
	if err != nil {
		return err
	}
	if !standaloneTypes[d.CreateType] {
		return &blockio.UnsupportedError{Feature: fmt.Sprintf("VMDK image type %q in a descriptor file", d.CreateType)}
	}
	img.desc = d
	var pos int64
	for i, l := range d.Extents {
		if l.Sectors == 0 {
			continue
		}
		e := &extent{start: pos, access: l.Access, typ: l.Type, readOnly: img.readOnly || l.Access != "RW"}
		if l.Access == "NOACCESS" || l.Type == "ZERO" {
			e.kind = kindZero
			e.size = l.Sectors * sectorSize
			e.file = l.File
		} else {
			switch l.Type {
			case "FLAT", "VMFS", "SPARSE", "VMFSSPARSE", "SESPARSE":
			default:
				return &blockio.UnsupportedError{Feature: fmt.Sprintf("VMDK extent type %q (extent %d)", l.Type, i+1)}
			}
			path, err := img.resolve(l.File)
			if err != nil {
				return err
			}
			e.file = infoPath(img.opts.Dir, img.filename, l.File)
			dev, err := img.opts.open(path, e.readOnly)
			if err != nil {
				return fmt.Errorf("vmdk: opening extent %q: %w", l.File, err)
			}
			e.dev = dev
			img.extents = append(img.extents, e)
			if l.Type == "SESPARSE" {
				se, err := openSESparse(dev, img.limits())
				if err != nil {
					return fmt.Errorf("vmdk: extent %q: %w", l.File, err)
				}
				e.kind, e.se, e.size, e.readOnly = kindSESparse, se, se.size(), true
			} else if l.Type == "FLAT" || l.Type == "VMFS" {
				e.kind = kindFlat
				e.size = l.Sectors * sectorSize
				e.flatOff = l.Offset * sectorSize
			} else {
				hdr := make([]byte, min(dev.Size(), headerSize))
				if _, err := dev.ReadAt(hdr, 0); err != nil {
					return err
				}
				if len(hdr) < headerSize || !isSparseMagic(hdr) {
					return blockio.Corruptf("vmdk sparse extent", 0, "%s is not a sparse extent", l.File)
				}
				sp, _, err := openSparse(dev, hdr, e.readOnly, img.limits())
				if err != nil {
					return fmt.Errorf("vmdk: extent %q: %w", l.File, err)
				}
				e.kind = kindSparse
				e.sp = sp
				e.size = sp.size()
				if sp.compressed {
					img.streamRO = true
				}
			}
			pos += e.size
			if pos > 1<<62 {
				return blockio.Corruptf("vmdk descriptor", -1, "total size too large")
			}
			continue
		}
		img.extents = append(img.extents, e)
		pos += e.size
		if pos > 1<<62 {
			return blockio.Corruptf("vmdk descriptor", -1, "total size too large")
		}
	}
	img.size = pos
	img.sizeCaches()
	return img.openParent()
}

// limits returns the resource limits for opening one more extent; all
// extents of the image share one metadata-memory budget.
func (img *Image) limits() sparseLimits {
	return sparseLimits{maxMeta: img.opts.MaxMetadataMemory, used: &img.metaUsed}
}

// sizeCaches shares what the directories left of the metadata budget
// among the extents' grain-table caches (at most gtCacheBytes each, at
// least one table), so that a descriptor with thousands of extents cannot
// make reads cache an unbounded amount of tables.
func (img *Image) sizeCaches() {
	n := int64(0)
	for _, e := range img.extents {
		if e.sp != nil || e.se != nil {
			n++
		}
	}
	if n == 0 {
		return
	}
	per := min(max(img.opts.MaxMetadataMemory-img.metaUsed, 0)/n, gtCacheBytes)
	for _, e := range img.extents {
		switch {
		case e.sp != nil:
			e.sp.cacheMax = int(max(1, per/e.sp.gtBytes))
		case e.se != nil:
			e.se.cacheMax = int(max(1, min(256, per/(seGTSectors*sectorSize))))
		}
	}
}

// resolve turns an extent file name into a path, enforcing the path policy.
func (img *Image) resolve(name string) (string, error) {
	if name == "" {
		return "", blockio.Corruptf("vmdk descriptor", -1, "empty extent file name")
	}
	if filepath.IsAbs(name) {
		if !img.opts.AllowUnsafePaths {
			return "", &blockio.InvalidError{What: "extent path", Value: name, Reason: "absolute extent paths are refused (Options.AllowUnsafePaths)"}
		}
		return name, nil
	}
	clean := filepath.Clean(name)
	if img.opts.AllowUnsafePaths {
		return filepath.Join(img.opts.Dir, name), nil
	}
	escape := &blockio.InvalidError{What: "extent path", Value: name, Reason: "extent paths leaving the image directory are refused (Options.AllowUnsafePaths)"}
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", escape
	}
	p := filepath.Join(img.opts.Dir, name)
	// A symbolic link must not lead out of the directory either.
	if real, err := filepath.EvalSymlinks(p); err == nil {
		dir := img.opts.Dir
		if dir == "" {
			dir = "."
		}
		if rdir, err := filepath.EvalSymlinks(dir); err == nil {
			rel, err := filepath.Rel(rdir, real)
			if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
				return "", escape
			}
		}
	}
	return p, nil
}

// infoPath mimics QEMU's path_combine for the extent filename in Info.
func infoPath(dir, imageName, name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	if i := strings.LastIndexByte(imageName, '/'); i >= 0 {
		return imageName[:i+1] + name
	}
	if imageName == "" && dir != "" && dir != "." {
		return filepath.Join(dir, name)
	}
	return name
}

func (img *Image) openParent() error {
	hint := img.desc.ParentFileNameHint
	if hint == "" || img.opts.NoParent {
		return nil
	}
	path := hint
	if !filepath.IsAbs(path) {
		path = filepath.Join(img.opts.Dir, hint)
	}
	img.parentPath = path
	var dev blockio.Device
	var err error
	if img.opts.ParentOpener != nil {
		dev, err = img.opts.ParentOpener(path, true)
	} else {
		dev, err = img.openDefaultParent(path)
	}
	if err != nil {
		return fmt.Errorf("vmdk: opening parent %q: %w", hint, err)
	}
	img.parent = dev
	for _, e := range img.extents {
		e.back = func(p []byte, off int64) error { return img.readParent(p, e.start+off) }
	}
	return nil
}

func (img *Image) openDefaultParent(path string) (blockio.Device, error) {
	po := Options{
		ReadOnly: true, AllowUnsafePaths: img.opts.AllowUnsafePaths,
		MaxMetadataMemory: img.opts.MaxMetadataMemory, FileOpener: img.opts.FileOpener,
		chain: img.opts.chain,
	}
	if po.chain == nil {
		po.chain = map[string]bool{}
		if img.filename != "" {
			po.chain[chainKey(img.filename)] = true
		}
	}
	f, err := po.open(path, true)
	if err != nil {
		return nil, err
	}
	hdr := make([]byte, min(f.Size(), 4096))
	_, rerr := f.ReadAt(hdr, 0)
	f.Close()
	if rerr != nil {
		return nil, rerr
	}
	if !Probe(hdr) {
		if po.chain[chainKey(path)] {
			return nil, blockio.Corruptf("vmdk parent chain", -1, "loop: %s is already part of the chain", path)
		}
		return po.open(path, true) // raw parent
	}
	p, err := OpenFile(path, po)
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (img *Image) closeExtents(first blockio.Device) {
	for _, e := range img.extents {
		if e.dev != nil && e.dev != first {
			e.dev.Close()
		}
	}
	if img.descDev != nil && img.descDev != first {
		img.descDev.Close()
	}
	if img.parent != nil {
		img.parent.Close()
	}
}
