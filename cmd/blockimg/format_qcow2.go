package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/qcow2"
)

func init() {
	registerFormat(&format{
		name:       "qcow2",
		probe:      qcow2.Probe,
		open:       openQcow2,
		create:     createQcow2,
		describe:   describeQcow2,
		compressed: qcow2Compressed,
		check:      checkQcow2,
		options: []createOpt{
			{"backing_file", "str", "backing image name (relative to the new image)"},
			{"backing_fmt", "str", "format of the backing image"},
			{"cluster_size", "size", "cluster size, a power of two from 512 to 2M"},
			{"compat", "str", "header version: 0.10 (v2) or 1.1 (v3)"},
			{"compression_type", "str", "compressed cluster codec: zlib or zstd"},
			{"data_file", "str", "external data file name"},
			{"data_file_raw", "bool (on/off)", "keep the data file a valid raw image"},
			{"extended_l2", "bool (on/off)", "subcluster allocation (extended L2 entries)"},
			{"lazy_refcounts", "bool (on/off)", "defer refcount updates until flush"},
			{"preallocation", "str", "off, metadata, falloc or full"},
			{"refcount_bits", "num", "refcount entry width: 1, 2, 4, 8, 16, 32 or 64"},
			{"size", "size", "virtual disk size"},
		},
		zeroInit: true,
	})
}

func openQcow2(path string, o openOptions) (blockio.Device, error) {
	return qcow2.OpenFile(path, qcow2.Options{ReadOnly: o.readOnly, NoBacking: o.noBacking})
}

// qcow2CreateOptions maps qemu-img's -o options to qcow2.CreateOptions.
func qcow2CreateOptions(p *createParams) (qcow2.CreateOptions, error) {
	var co qcow2.CreateOptions
	var err error
	l := p.opts
	if v, ok := l.get("compat"); ok {
		co.Compat = v
	}
	if co.ClusterSize, err = l.getSize("cluster_size", 0); err != nil {
		return co, err
	}
	rb, err := l.getInt("refcount_bits", 0)
	if err != nil {
		return co, err
	}
	co.RefcountBits = int(rb)
	// The zero values mean "default" to qcow2; an explicit 0 is invalid.
	if co.ClusterSize == 0 && l.has("cluster_size") {
		return co, fmt.Errorf("Cluster size must be a power of two between 512 and 2048k")
	}
	if co.RefcountBits == 0 && l.has("refcount_bits") {
		return co, fmt.Errorf("Refcount width must be a power of two and may not exceed 64 bits")
	}
	if co.LazyRefcounts, err = l.getBool("lazy_refcounts", false); err != nil {
		return co, err
	}
	if co.ExtendedL2, err = l.getBool("extended_l2", false); err != nil {
		return co, err
	}
	if co.DataFileRaw, err = l.getBool("data_file_raw", false); err != nil {
		return co, err
	}
	if v, ok := l.get("compression_type"); ok {
		if v != "zlib" && v != "zstd" {
			return co, fmt.Errorf("Parameter 'compression-type' does not accept value '%s'", v)
		}
		co.CompressionType = v
	}
	if v, ok := l.get("preallocation"); ok {
		if co.Preallocation, err = blockio.ParsePrealloc(v); err != nil {
			return co, fmt.Errorf("Parameter 'preallocation' does not accept value '%s'", v)
		}
	}
	co.DataFile, _ = l.get("data_file")
	for _, k := range []string{"encryption", "encrypt.format"} {
		if l.has(k) {
			return co, fmt.Errorf("encrypted images are not supported")
		}
	}
	co.BackingFile, co.BackingFormat = p.backing, p.backingFmt
	return co, nil
}

func createQcow2(path string, p *createParams) (blockio.Device, error) {
	co, err := qcow2CreateOptions(p)
	if err != nil {
		return nil, err
	}
	img, err := qcow2.CreateFile(path, p.size, co)
	if err != nil {
		return nil, err
	}
	return img, nil
}

// describeQcow2 lists the options as qemu-img's "Formatting" line does.
func describeQcow2(p *createParams) string {
	var b strings.Builder
	l := p.opts
	get := func(k, def string) string {
		if v, ok := l.get(k); ok {
			return v
		}
		return def
	}
	add := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s=%s ", k, v)
		}
	}
	cs := get("cluster_size", "65536")
	if n, err := parseSize(cs); err == nil {
		cs = fmt.Sprint(n)
	}
	add("cluster_size", cs)
	add("extended_l2", get("extended_l2", "off"))
	add("preallocation", get("preallocation", ""))
	add("compression_type", get("compression_type", "zlib"))
	add("size", fmt.Sprint(p.size))
	add("backing_file", p.backing)
	add("backing_fmt", p.backingFmt)
	add("compat", get("compat", ""))
	add("data_file", get("data_file", ""))
	add("data_file_raw", get("data_file_raw", ""))
	add("lazy_refcounts", get("lazy_refcounts", "off"))
	add("refcount_bits", get("refcount_bits", "16"))
	return strings.TrimSuffix(b.String(), " ")
}

func qcow2Compressed(dev blockio.Device) (*compressedTarget, error) {
	img, ok := dev.(*qcow2.Image)
	if !ok {
		return nil, fmt.Errorf("Compression not supported for this file format")
	}
	return &compressedTarget{clusterSize: img.ClusterSize(), write: img.WriteCompressed}, nil
}

func checkQcow2(ctx context.Context, dev blockio.Device, path, fix string, log func(string)) (*checkReport, error) {
	img, ok := dev.(*qcow2.Image)
	if !ok {
		return nil, fmt.Errorf("not a qcow2 image")
	}
	o := qcow2.CheckOptions{Log: log}
	switch fix {
	case "leaks":
		o.Repair = qcow2.RepairLeaks
	case "all":
		o.Repair = qcow2.RepairAll
	}
	r, err := img.Check(ctx, o)
	if err != nil {
		return nil, err
	}
	return &checkReport{
		CheckErrors: r.CheckErrors, Corruptions: r.Corruptions, Leaks: r.Leaks,
		CorruptionsFixed: r.CorruptionsFixed, LeaksFixed: r.LeaksFixed, ImageEndOffset: r.ImageEndOffset,
		TotalClusters: r.TotalClusters, AllocatedClusters: r.AllocatedClusters,
		FragmentedClusters: r.FragmentedClusters, CompressedClusters: r.CompressedClusters,
	}, nil
}
