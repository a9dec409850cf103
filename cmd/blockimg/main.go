package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"sort"
	"strings"
)

func main() {
	// BLOCKIMG_CPUPROFILE=file writes a CPU profile (for performance work).
	if p := os.Getenv("BLOCKIMG_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			if pprof.StartCPUProfile(f) == nil {
				rc := run(os.Args[1:], os.Stdout, os.Stderr)
				pprof.StopCPUProfile()
				f.Close()
				os.Exit(rc)
			}
		}
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// env carries a command's output streams.
type env struct {
	ctx    context.Context
	out    *bufio.Writer
	stderr io.Writer
	quiet  bool
}

// errorf prints "blockimg: msg" on stderr.
func (e *env) errorf(format string, args ...any) {
	e.out.Flush()
	msg := fmt.Sprintf(format, args...)
	for _, line := range strings.Split(msg, "\n") {
		fmt.Fprintf(e.stderr, "blockimg: %s\n", line)
	}
}

// usage prints a command-line error and the help hint; it returns exit
// code 1 as qemu-img does.
func (e *env) usage(format string, args ...any) int {
	e.out.Flush()
	fmt.Fprintf(e.stderr, "blockimg: %s\nTry 'blockimg --help' for more information\n", fmt.Sprintf(format, args...))
	return 1
}

// printf writes to stdout unless -q was given.
func (e *env) printf(format string, args ...any) {
	if !e.quiet {
		fmt.Fprintf(e.out, format, args...)
	}
}

type command struct {
	name  string
	run   func(e *env, args []string) int
	usage string
}

// commands is commandTable, set in init: printHelp lists it, and the
// commands call printHelp, so a direct reference would be an
// initialization cycle.
var commands []command

func init() {
	commands = commandTable
}

var commandTable = []command{
	{"bench", cmdBench, "bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval] [-i aio] [-n] [--no-drain] [-o offset] [--pattern=pattern] [-q] [-s buffer_size] [-S step_size] [-t cache] [-w] [-U] filename"},
	{"check", cmdCheck, "check [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] [-U] filename"},
	{"commit", cmdCommit, "commit [-q] [-f fmt] [-t cache] [-b base] [-r rate_limit] [-d] [-p] filename"},
	{"compare", cmdCompare, "compare [-f fmt] [-F fmt] [-p] [-q] [-s] [-U] filename1 filename2"},
	{"convert", cmdConvert, "convert [-U] [-c] [-p] [-q] [-n] [-f fmt] [-O output_fmt] [-B backing_file [-F backing_fmt]] [-o options] [-S sparse_size] [-m num_workers] [-W] filename output_filename"},
	{"create", cmdCreate, "create [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] [-o options] filename [size]"},
	{"info", cmdInfo, "info [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename"},
	{"io", cmdIO, "io [-f fmt] [-U] [-c command]... filename"},
	{"map", cmdMap, "map [-f fmt] [--start-offset=offset] [--max-length=len] [--output=ofmt] [-U] filename"},
	{"measure", cmdMeasure, "measure [--output=ofmt] [-O output_fmt] [-o options] [--size N | [-f fmt] [-l snapshot_param] filename]"},
	{"rebase", cmdRebase, "rebase [-U] [-q] [-f fmt] [-t cache] [-T src_cache] [-p] [-u] -b backing_file [-F backing_fmt] filename"},
	{"resize", cmdResize, "resize [-f fmt] [--preallocation=prealloc] [-q] [--shrink] filename [+ | -]size"},
	{"snapshot", cmdSnapshot, "snapshot [-U] [-q] [-l | -a snapshot | -c snapshot | -d snapshot] filename"},
}

// run executes blockimg with args (without the program name) and returns
// the exit code. It is the whole program, testable in-process.
func run(args []string, stdout, stderr io.Writer) int {
	e := &env{ctx: context.Background(), out: bufio.NewWriterSize(stdout, 64<<10), stderr: stderr}
	defer e.out.Flush()
	if len(args) == 0 {
		return e.usage("Not enough arguments")
	}
	switch args[0] {
	case "-h", "--help", "help":
		printHelp(e)
		return 0
	case "-V", "--version":
		e.printf("blockimg (blocklayer), command line compatible with qemu-img 7.2\n")
		return 0
	}
	for _, c := range commandTable {
		if c.name == args[0] {
			return c.run(e, args[1:])
		}
	}
	return e.usage("Command not found: %s", args[0])
}

func printHelp(e *env) {
	e.printf("usage: blockimg command [command options]\nblocklayer disk image utility (qemu-img compatible)\n\nCommand syntax:\n")
	for _, c := range commands {
		e.printf("  %s\n", c.usage)
	}
	e.printf("\nio commands:\n")
	for _, c := range ioCommands {
		e.printf("  %s %s\n", c.name, c.usage)
	}
	names := make([]string, 0, len(formats))
	for n := range formats {
		names = append(names, n)
	}
	sort.Strings(names)
	e.printf("\nSupported formats: %s\n", strings.Join(names, " "))
}

// parseOutput parses --output's value, printing qemu-img's message when
// it is neither human nor json.
func (e *env) parseOutput(v string) (json bool, ok bool) {
	switch v {
	case "json":
		return true, true
	case "human":
		return false, true
	}
	e.errorf("--output must be used with human or json as argument.")
	return false, false
}
