package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/vmdk"
)

func init() {
	registerFormat(&format{
		name:       "vmdk",
		probe:      vmdk.Probe,
		open:       openVmdk,
		create:     createVmdk,
		describe:   describeVmdk,
		check:      checkVmdk,
		compressed: vmdkCompressed,
		sequential: vmdkSequential,
		options: []createOpt{
			{"adapter_type", "str", "virtual adapter: ide, buslogic, lsilogic or legacyESX"},
			{"backing_file", "str", "parent vmdk name"},
			{"compat6", "bool (on/off)", "VMDK version 6 (hardware version 6)"},
			{"hwversion", "str", "virtual hardware version"},
			{"size", "size", "virtual disk size"},
			{"subformat", "str", "monolithicSparse, monolithicFlat, twoGbMaxExtentSparse, twoGbMaxExtentFlat or streamOptimized"},
			{"toolsversion", "str", "VMware guest tools version"},
			{"zeroed_grain", "bool (on/off)", "zeroed-grain table entries"},
		},
		zeroInit: true,
	})
}

func openVmdk(path string, o openOptions) (blockio.Device, error) {
	return vmdk.OpenFile(path, vmdk.Options{ReadOnly: o.readOnly, NoParent: o.noBacking})
}

func createVmdk(path string, p *createParams) (blockio.Device, error) {
	var co vmdk.CreateOptions
	var err error
	l := p.opts
	co.Subformat, _ = l.get("subformat")
	co.AdapterType, _ = l.get("adapter_type")
	co.HWVersion, _ = l.get("hwversion")
	if co.HWVersion == "undefined" {
		co.HWVersion = ""
	}
	co.ToolsVersion, _ = l.get("toolsversion")
	if co.Compat6, err = l.getBool("compat6", false); err != nil {
		return nil, err
	}
	if co.ZeroedGrain, err = l.getBool("zeroed_grain", false); err != nil {
		return nil, err
	}
	if p.backing != "" {
		if p.backingFmt != "" && p.backingFmt != "vmdk" {
			return nil, fmt.Errorf("backing file format '%s' is not supported for vmdk (vmdk parents only)", p.backingFmt)
		}
		co.BackingFile = p.backing
	}
	return vmdk.CreateFile(path, p.size, co)
}

// describeVmdk lists the options as qemu-img's "Formatting" line does.
func describeVmdk(p *createParams) string {
	var b strings.Builder
	l := p.opts
	add := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s=%s ", k, v)
		}
	}
	get := func(k, def string) string {
		if v, ok := l.get(k); ok {
			return v
		}
		return def
	}
	add("size", fmt.Sprint(p.size))
	add("adapter_type", get("adapter_type", ""))
	add("backing_file", p.backing)
	add("backing_fmt", p.backingFmt)
	add("compat6", get("compat6", "off"))
	add("hwversion", get("hwversion", "undefined"))
	add("toolsversion", get("toolsversion", ""))
	add("subformat", get("subformat", ""))
	add("zeroed_grain", get("zeroed_grain", ""))
	return strings.TrimSuffix(b.String(), " ")
}

func vmdkSequential(dev blockio.Device) bool {
	img, ok := dev.(*vmdk.Image)
	return ok && img.CreateType() == vmdk.StreamOptimized
}

// vmdkCompressed: a streamOptimized image compresses every grain (in
// parallel, inside the vmdk package); other subformats cannot compress.
func vmdkCompressed(dev blockio.Device) (*compressedTarget, error) {
	if !vmdkSequential(dev) {
		return nil, fmt.Errorf("Compression not supported for this file format")
	}
	return &compressedTarget{clusterSize: 64 << 10, ordered: true, write: func(p []byte, off int64) error {
		_, err := dev.WriteAt(p, off)
		return err
	}}, nil
}

func checkVmdk(ctx context.Context, dev blockio.Device, path, fix string, log func(string)) (*checkReport, error) {
	img, ok := dev.(*vmdk.Image)
	if !ok {
		return nil, fmt.Errorf("not a vmdk image")
	}
	if fix != "" {
		return nil, fmt.Errorf("repairing vmdk images is not supported")
	}
	r, err := img.Check(ctx)
	if err != nil {
		return nil, err
	}
	if log != nil {
		for _, p := range r.Problems {
			log(p)
		}
	}
	return &checkReport{Corruptions: int64(r.Corruptions), Leaks: int64(r.Leaks)}, nil
}
