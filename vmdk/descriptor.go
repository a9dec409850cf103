package vmdk

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/blocklayer/blocklayer/blockio"
)

// Descriptor limits applied to untrusted text.
const (
	maxDescLineLen   = 4096
	maxDescLines     = 1 << 16
	maxExtents       = 1 << 15
	maxExtentNameLen = 511
)

// noParentCID is the parentCID of a disk without a parent.
const noParentCID = 0xffffffff

// ExtentLine is one extent line of a descriptor:
// ACCESS SECTORS TYPE ["FILENAME" [OFFSET]]. It is a plain value.
type ExtentLine struct {
	Access    string // RW, RDONLY or NOACCESS
	Sectors   int64
	Type      string // FLAT, SPARSE, ZERO, VMFS, VMFSSPARSE, ...
	File      string // as written (no quotes); empty for ZERO
	Offset    int64  // FLAT start offset in sectors
	HasOffset bool
}

// Descriptor is a parsed VMDK text descriptor. It is a plain value: safe
// to read from several goroutines, not to mutate concurrently.
type Descriptor struct {
	Version            int
	CID                uint32
	ParentCID          uint32
	CreateType         string
	ParentFileNameHint string
	Extents            []ExtentLine
	// DDB holds the ddb.* keys in file order (values without quotes).
	DDB []KV
}

// KV is a key/value pair of the disk database (a plain value).
type KV struct{ Key, Value string }

// DDBValue returns the value of a ddb key or "".
func (d *Descriptor) DDBValue(key string) string {
	for _, kv := range d.DDB {
		if kv.Key == key {
			return kv.Value
		}
	}
	return ""
}

func descErr(line int, format string, args ...any) error {
	return blockio.Corruptf("vmdk descriptor", -1, "line %d: %s", line, fmt.Sprintf(format, args...))
}

// ParseDescriptor parses descriptor text. Text after the first NUL byte is
// ignored. It enforces size and line-length limits and never allocates
// more than a small multiple of len(text).
func ParseDescriptor(text []byte) (*Descriptor, error) {
	if i := indexByte(text, 0); i >= 0 {
		text = text[:i]
	}
	if len(text) > maxDescriptor {
		return nil, blockio.Corruptf("vmdk descriptor", -1, "descriptor too large (%d bytes, limit %d)", len(text), maxDescriptor)
	}
	d := &Descriptor{ParentCID: noParentCID}
	var haveVersion, haveCID bool
	lines := strings.Split(string(text), "\n")
	if len(lines) > maxDescLines {
		return nil, blockio.Corruptf("vmdk descriptor", -1, "too many lines (%d)", len(lines))
	}
	for i, raw := range lines {
		ln := i + 1
		if len(raw) > maxDescLineLen {
			return nil, descErr(ln, "line too long (%d bytes)", len(raw))
		}
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == '#' {
			continue
		}
		if isAccess(firstField(line)) {
			e, err := parseExtentLine(line, ln)
			if err != nil {
				return nil, err
			}
			if len(d.Extents) >= maxExtents {
				return nil, descErr(ln, "too many extents")
			}
			d.Extents = append(d.Extents, e)
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			continue // unknown non key=value lines are ignored, as QEMU does
		}
		key = strings.TrimSpace(key)
		val = strings.TrimSpace(val)
		switch {
		case key == "version":
			v, err := strconv.Atoi(val)
			if err != nil || v < 1 || v > 3 {
				return nil, descErr(ln, "bad version %q", val)
			}
			d.Version, haveVersion = v, true
		case key == "CID" && !haveCID: // the first CID line counts, as it is the one rewritten
			haveCID = true
			c, err := parseCID(val)
			if err != nil {
				return nil, descErr(ln, "bad CID %q", val)
			}
			d.CID = c
		case key == "parentCID":
			c, err := parseCID(val)
			if err != nil {
				return nil, descErr(ln, "bad parentCID %q", val)
			}
			d.ParentCID = c
		case key == "createType":
			d.CreateType = unquote(val)
		case key == "parentFileNameHint":
			d.ParentFileNameHint = unquote(val)
			if len(d.ParentFileNameHint) > 4095 {
				return nil, descErr(ln, "parentFileNameHint too long")
			}
		case strings.HasPrefix(key, "ddb."):
			d.DDB = append(d.DDB, KV{key, unquote(val)})
		}
	}
	if !haveVersion {
		return nil, blockio.Corruptf("vmdk descriptor", -1, "no version line")
	}
	return d, nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func firstField(s string) string {
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		return s[:i]
	}
	return s
}

func isAccess(s string) bool { return s == "RW" || s == "RDONLY" || s == "NOACCESS" }

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

func parseCID(s string) (uint32, error) {
	if len(s) == 0 || len(s) > 8 {
		return 0, fmt.Errorf("bad length")
	}
	v, err := strconv.ParseUint(s, 16, 32)
	return uint32(v), err
}

func parseExtentLine(line string, ln int) (ExtentLine, error) {
	var e ExtentLine
	fields := strings.Fields(line)
	if len(fields) < 3 {
		return e, descErr(ln, "invalid extent line")
	}
	e.Access = fields[0]
	n, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil || n < 0 || n > 1<<52 {
		return e, descErr(ln, "bad extent size %q", fields[1])
	}
	e.Sectors = n
	e.Type = fields[2]
	// The rest after the type: optional "FILENAME" then optional offset.
	rest := line
	for range 3 {
		rest = strings.TrimLeft(rest, " \t")
		rest = rest[len(firstField(rest)):]
	}
	rest = strings.TrimSpace(rest)
	if rest != "" {
		if rest[0] != '"' {
			return e, descErr(ln, "extent file name not quoted")
		}
		end := strings.IndexByte(rest[1:], '"')
		if end < 0 {
			return e, descErr(ln, "unterminated extent file name")
		}
		e.File = rest[1 : 1+end]
		if len(e.File) > maxExtentNameLen {
			return e, descErr(ln, "extent file name too long")
		}
		rest = strings.TrimSpace(rest[2+end:])
		if rest != "" {
			off, err := strconv.ParseInt(rest, 10, 64)
			if err != nil || off < 0 || off > 1<<52 {
				return e, descErr(ln, "bad extent offset %q", rest)
			}
			e.Offset, e.HasOffset = off, true
		}
	}
	switch e.Type {
	case "FLAT":
		if !e.HasOffset {
			return e, descErr(ln, "invalid extent line: FLAT needs an offset")
		}
	case "ZERO":
	default:
		if e.HasOffset {
			return e, descErr(ln, "invalid extent line: offset only allowed for FLAT")
		}
	}
	if e.Type != "ZERO" && e.File == "" {
		return e, descErr(ln, "extent without file name")
	}
	return e, nil
}

// replaceCID returns text with the value of its CID line set to cid
// (printed like QEMU: lower-case hex, no padding). Text after the first NUL
// is dropped. If there is no CID line one is inserted after version=.
func replaceCID(text []byte, cid uint32) []byte {
	if i := indexByte(text, 0); i >= 0 {
		text = text[:i]
	}
	lines := strings.SplitAfter(string(text), "\n")
	val := strconv.FormatUint(uint64(cid), 16)
	done := false
	for i, l := range lines {
		k, _, ok := strings.Cut(l, "=")
		if ok && strings.TrimSpace(k) == "CID" {
			nl := "\n"
			if strings.HasSuffix(l, "\r\n") {
				nl = "\r\n"
			} else if !strings.HasSuffix(l, "\n") {
				nl = ""
			}
			lines[i] = "CID=" + val + nl
			done = true
			break
		}
	}
	if !done {
		for i, l := range lines {
			k, _, ok := strings.Cut(l, "=")
			if ok && strings.TrimSpace(k) == "version" {
				if !strings.HasSuffix(l, "\n") {
					l += "\n"
				}
				lines[i] = l + "CID=" + val + "\n"
				break
			}
		}
	}
	return []byte(strings.Join(lines, ""))
}

// descTemplate holds what formatDescriptor needs to produce QEMU's text.
type descTemplate struct {
	CID, ParentCID uint32
	CreateType     string
	ParentHint     string
	Extents        []ExtentLine
	HWVersion      string
	Cylinders      int64
	Heads          int
	AdapterType    string
	ToolsVersion   string
}

// formatDescriptor renders a descriptor exactly as qemu-img 7.2 does.
func formatDescriptor(t descTemplate) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Disk DescriptorFile\nversion=1\nCID=%x\nparentCID=%x\ncreateType=\"%s\"\n", t.CID, t.ParentCID, t.CreateType)
	if t.ParentHint != "" {
		fmt.Fprintf(&b, "parentFileNameHint=\"%s\"\n", t.ParentHint)
	} else {
		b.WriteString("\n")
	}
	b.WriteString("# Extent description\n")
	for _, e := range t.Extents {
		fmt.Fprintf(&b, "%s %d %s \"%s\"", e.Access, e.Sectors, e.Type, e.File)
		if e.HasOffset {
			fmt.Fprintf(&b, " %d", e.Offset)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"%s\"\nddb.geometry.cylinders = \"%d\"\nddb.geometry.heads = \"%d\"\nddb.geometry.sectors = \"63\"\nddb.adapterType = \"%s\"\nddb.toolsVersion = \"%s\"\n",
		t.HWVersion, t.Cylinders, t.Heads, t.AdapterType, t.ToolsVersion)
	return b.String()
}
