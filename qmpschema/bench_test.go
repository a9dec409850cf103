package qmpschema

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"testing"
)

var benchOptions = []byte(`{"driver": "qcow2", "node-name": "disk0", "cache": {"direct": true},
	"file": {"driver": "file", "filename": "/images/a.qcow2", "aio": "native"},
	"backing": {"driver": "qcow2", "file": {"driver": "file", "filename": "/images/base.qcow2"}},
	"lazy-refcounts": true, "overlap-check": {"template": "cached", "inactive-l2": true}}`)

func BenchmarkDecodeBlockdevOptions(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchOptions)))
	for b.Loop() {
		var o BlockdevOptions
		if err := json.Unmarshal(benchOptions, &o); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeBlockdevOptions(b *testing.B) {
	var o BlockdevOptions
	if err := json.Unmarshal(benchOptions, &o); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(o); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckArguments(b *testing.B) {
	v, err := decodeValue(benchOptions)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckArguments("BlockdevOptions", v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServerRoundTrip measures one blockdev-add request/reply over a
// Unix socket pair, argument checking and decoding included.
func BenchmarkServerRoundTrip(b *testing.B) {
	s := &Server{}
	must(Register(s, "blockdev-add", func(context.Context, *BlockdevAddArgs) (Empty, error) { return Empty{}, nil }))
	a, c := socketPair(b)
	go s.ServeConn(context.Background(), a)
	r := bufio.NewReader(c)
	r.ReadString('\n')
	c.Write([]byte(`{"execute":"qmp_capabilities"}`))
	r.ReadString('\n')
	req := append(append([]byte(`{"execute":"blockdev-add","arguments":`), benchOptions...), '}')
	b.ReportAllocs()
	for b.Loop() {
		c.Write(req)
		if _, err := r.ReadString('\n'); err != nil {
			b.Fatal(err)
		}
	}
	c.Close()
	s.Close()
}

// BenchmarkQueryVersion compares a query-version round trip with ours and
// with qemu-storage-daemon's QMP monitor, both over a Unix socket.
func BenchmarkQueryVersion(b *testing.B) {
	run := func(b *testing.B, path string) {
		c, err := net.Dial("unix", path)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		r := bufio.NewReader(c)
		r.ReadString('\n')
		c.Write([]byte(`{"execute":"qmp_capabilities"}`))
		r.ReadString('\n')
		req := []byte(`{"execute":"query-version"}`)
		b.ReportAllocs()
		for b.Loop() {
			c.Write(req)
			if _, err := r.ReadString('\n'); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("blocklayer", func(b *testing.B) { run(b, startServer(b, &Server{})) })
	b.Run("qemu-storage-daemon", func(b *testing.B) { run(b, startQSD(b)) })
}
