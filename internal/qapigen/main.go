// Command qapigen turns QAPI schema files into Go types.
//
// Generate (run by `go generate ./qmpschema`):
//
//	qapigen [-pkg NAME] [-o DIR] SCHEMA.json
//
// writes DIR/types_gen.go, commands_gen.go, events_gen.go and schema_gen.go
// for SCHEMA.json and the files it includes.
//
// Strip comments (to refresh the comment-free copy in qmpschema/schema):
//
//	qapigen -strip IN.json OUT.json
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/blocklayer/blocklayer/internal/qapigen/qapi"
)

func main() {
	pkg := flag.String("pkg", "qmpschema", "Go package name of the generated files")
	out := flag.String("o", ".", "output directory")
	strip := flag.Bool("strip", false, "strip comments: qapigen -strip IN OUT")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: qapigen [-pkg NAME] [-o DIR] SCHEMA.json\n       qapigen -strip IN OUT\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := run(*strip, *pkg, *out, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "qapigen:", err)
		os.Exit(1)
	}
}

func run(strip bool, pkg, out string, args []string) error {
	if strip {
		if len(args) != 2 {
			return fmt.Errorf("-strip takes IN and OUT")
		}
		src, err := os.ReadFile(args[0])
		if err != nil {
			return err
		}
		clean := qapi.Strip(src)
		if _, err := qapi.Parse(filepath.Base(args[0]), clean); err != nil {
			return fmt.Errorf("stripped text does not parse: %w", err)
		}
		return os.WriteFile(args[1], clean, 0o644)
	}
	if len(args) != 1 {
		flag.Usage()
		return fmt.Errorf("need exactly one schema file")
	}
	s, err := qapi.Load(args[0], nil)
	if err != nil {
		return err
	}
	files, err := qapi.Generate(s, pkg)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(out, n), files[n], 0o644); err != nil {
			return err
		}
	}
	return nil
}
