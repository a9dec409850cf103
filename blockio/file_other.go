//go:build !linux

package blockio

// File is a Device backed by an OS file. It is only implemented on Linux;
// elsewhere OpenFile and CreateFile fail with ErrUnsupported and a File
// cannot be obtained.
// Its methods, like the Linux File's, are safe for concurrent use.
type File struct{}

func errNoFile() error { return &UnsupportedError{Feature: "OS file devices on this platform"} }

// OpenFile fails with ErrUnsupported on this platform.
func OpenFile(path string, opts FileOptions) (*File, error) { return nil, errNoFile() }

// CreateFile fails with ErrUnsupported on this platform.
func CreateFile(path string, size int64, opts FileOptions) (*File, error) {
	return nil, errNoFile()
}

func (f *File) ReadAt(p []byte, off int64) (int, error)       { return 0, errNoFile() }
func (f *File) WriteAt(p []byte, off int64) (int, error)      { return 0, errNoFile() }
func (f *File) Size() int64                                   { return 0 }
func (f *File) Flush() error                                  { return errNoFile() }
func (f *File) Close() error                                  { return errNoFile() }
func (f *File) Discard(off, n int64) error                    { return errNoFile() }
func (f *File) WriteZeroes(off, n int64, mayUnmap bool) error { return errNoFile() }
func (f *File) BlockStatus(off, n int64) (Extent, error)      { return Extent{}, errNoFile() }
func (f *File) Truncate(size int64, prealloc Prealloc) error  { return errNoFile() }
func (f *File) AllocatedSize() (int64, error)                 { return 0, errNoFile() }
func (f *File) Path() string                                  { return "" }
func (f *File) ReadOnly() bool                                { return false }
func (f *File) Direct() bool                                  { return false }
func (f *File) IsBlockDevice() bool                           { return false }
func (f *File) Locked() bool                                  { return false }
func (f *File) BlockSize() int64                              { return 1 }
