// Command blockd is the blocklayer daemon: it serves QMP, the QEMU Machine
// Protocol, on a Unix socket.
//
//	blockd --qmp /run/blockd.sock
//
// For now it offers the protocol core (qmp_capabilities, query-version,
// query-commands); the block commands appear in query-commands as the
// block graph and jobs gain their handlers. SIGINT or SIGTERM stops it
// gracefully: the socket is closed and removed, clients are disconnected.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/blocklayer/blocklayer/qmpschema"
)

func main() {
	qmpPath := flag.String("qmp", "", "path of the Unix socket to serve QMP on (required)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: blockd --qmp PATH\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *qmpPath == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *qmpPath, &qmpschema.Server{}); err != nil {
		fmt.Fprintln(os.Stderr, "blockd:", err)
		os.Exit(1)
	}
}

// run serves srv on a Unix socket at path until ctx ends, then closes the
// server (disconnecting clients) and removes the socket.
func run(ctx context.Context, path string, srv *qmpschema.Server) error {
	// A stale socket left by a crashed daemon would make Listen fail; remove
	// it only if nobody answers on it.
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return fmt.Errorf("%s: another process is serving this socket", path)
		}
		os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	l.(*net.UnixListener).SetUnlinkOnClose(true)
	err = srv.Serve(ctx, l)
	srv.Close()
	if errors.Is(err, context.Canceled) || errors.Is(err, qmpschema.ErrServerClosed) {
		return nil
	}
	return err
}
