package blockio

// ImageInfo describes an image as `qemu-img info --output=json` does; the
// JSON member names are those of the QAPI schema's ImageInfo. Format
// packages fill it; cmd/blockimg prints it.
// ImageInfo is a plain value: safe to copy and to read from many goroutines;
// do not modify one another goroutine uses.
type ImageInfo struct {
	Filename              string             `json:"filename"`
	Format                string             `json:"format"`
	DirtyFlag             *bool              `json:"dirty-flag,omitempty"`
	ActualSize            *int64             `json:"actual-size,omitempty"`
	VirtualSize           int64              `json:"virtual-size"`
	ClusterSize           *int64             `json:"cluster-size,omitempty"`
	Encrypted             *bool              `json:"encrypted,omitempty"`
	Compressed            *bool              `json:"compressed,omitempty"`
	BackingFilename       string             `json:"backing-filename,omitempty"`
	FullBackingFilename   string             `json:"full-backing-filename,omitempty"`
	BackingFilenameFormat string             `json:"backing-filename-format,omitempty"`
	Snapshots             []SnapshotInfo     `json:"snapshots,omitempty"`
	BackingImage          *ImageInfo         `json:"backing-image,omitempty"`
	FormatSpecific        *ImageInfoSpecific `json:"format-specific,omitempty"`
}

// SnapshotInfo is one internal snapshot (the schema's SnapshotInfo).
// SnapshotInfo is a plain value: safe to copy and to read from many
// goroutines; do not modify one another goroutine uses.
type SnapshotInfo struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	VMStateSize int64  `json:"vm-state-size"`
	DateSec     int64  `json:"date-sec"`
	DateNsec    int64  `json:"date-nsec"`
	VMClockSec  int64  `json:"vm-clock-sec"`
	VMClockNsec int64  `json:"vm-clock-nsec"`
	ICount      *int64 `json:"icount,omitempty"`
}

// ImageInfoSpecific is the schema's ImageInfoSpecific union: Type is the
// format name ("qcow2", "vmdk") and Data the format's own struct, which
// marshals with the schema's member names.
// ImageInfoSpecific is a plain value: safe to copy and to read from many
// goroutines; do not modify one another goroutine uses.
type ImageInfoSpecific struct {
	Type string `json:"type"`
	Data any    `json:"data"`
}

// Informer is implemented by images that can describe themselves.
// Implementations must be safe for concurrent use.
type Informer interface {
	Info() (ImageInfo, error)
}
