package qmpschema_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"

	"github.com/blocklayer/blocklayer/qmpschema"
)

// A server with one typed command handler, spoken to over an in-memory
// connection. Real deployments use Serve on a Unix socket (see cmd/blockd).
func Example() {
	srv := &qmpschema.Server{}
	err := qmpschema.Register(srv, "block_resize", func(ctx context.Context, a *qmpschema.BlockResizeArgs) (qmpschema.Empty, error) {
		if a.Device == nil {
			return qmpschema.Empty{}, qmpschema.Errorf(qmpschema.ErrorClassDeviceNotFound, "Device not found")
		}
		return qmpschema.Empty{}, nil
	})
	if err != nil {
		panic(err)
	}
	client, server := net.Pipe()
	go srv.ServeConn(context.Background(), server)
	r := bufio.NewReader(client)
	greeting, _ := r.ReadString('\n')
	fmt.Print(greeting)
	for _, cmd := range []string{
		`{"execute": "qmp_capabilities"}`,
		`{"execute": "block_resize", "arguments": {"device": "disk0", "size": 1073741824}, "id": 1}`,
		`{"execute": "block_resize", "arguments": {"size": 1073741824}, "id": 2}`,
		`{"execute": "block_resize", "arguments": {"device": "disk0", "size": "1G"}, "id": 3}`,
	} {
		client.Write([]byte(cmd))
		reply, _ := r.ReadString('\n')
		fmt.Print(reply)
	}
	client.Close()
	// Output:
	// {"QMP":{"version":{"qemu":{"major":2,"minor":4,"micro":0},"package":"blocklayer"},"capabilities":[]}}
	// {"return": {}}
	// {"return": {}, "id": 1}
	// {"id": 2, "error": {"class": "DeviceNotFound", "desc": "Device not found"}}
	// {"id": 3, "error": {"class": "GenericError", "desc": "Invalid parameter type for 'size', expected: integer"}}
}

// Decoding a flat union: the branch is chosen by "driver".
func ExampleBlockdevOptions() {
	var opts qmpschema.BlockdevOptions
	err := json.Unmarshal([]byte(`{"driver": "qcow2", "node-name": "disk0",
		"file": {"driver": "file", "filename": "/images/a.qcow2"}, "backing": "base0"}`), &opts)
	if err != nil {
		panic(err)
	}
	fmt.Println(opts.Driver, *opts.NodeName, opts.Qcow2.File.Definition.File.Filename, *opts.Qcow2.Backing.Reference)
	fmt.Println(opts.ReadOnly == nil) // absent optional member
	out, _ := json.Marshal(opts)
	fmt.Println(string(out))
	// Output:
	// qcow2 disk0 /images/a.qcow2 base0
	// true
	// {"driver":"qcow2","node-name":"disk0","file":{"driver":"file","filename":"/images/a.qcow2"},"backing":"base0"}
}

// Introspection: the arguments type of a command, by name.
func ExampleNewValue() {
	v, _ := qmpschema.NewValue("block-dirty-bitmap-add")
	json.Unmarshal([]byte(`{"node": "disk0", "name": "bm0", "granularity": 65536}`), v)
	fmt.Printf("%T %d\n", v, *v.(*qmpschema.BlockDirtyBitmapAdd).Granularity)
	e, _ := qmpschema.Lookup("block-dirty-bitmap-add")
	fmt.Println(e.Kind, e.Data)
	// Output:
	// *qmpschema.BlockDirtyBitmapAdd 65536
	// command BlockDirtyBitmapAdd
}
