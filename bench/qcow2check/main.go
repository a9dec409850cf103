// Command qcow2check runs blocklayer's qcow2 consistency check on an image,
// read-only, like `qemu-img check -f qcow2 --output=json FILE`, so that
// run.sh can time both side by side.
//
// It prints the check result as JSON on stdout (qemu-img's field names)
// and the time taken by Open and by Check on stderr. The exit status
// follows qemu-img check: 0 clean, 1 check errors, 2 corruptions, 3 leaks.
//
//	go run ./bench/qcow2check -f /tmp/img.qcow2
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime/pprof"
	"time"

	"github.com/blocklayer/blocklayer/qcow2"
)

func main() {
	path := flag.String("f", "", "qcow2 image")
	reps := flag.Int("n", 1, "run Check this many times on the open image (timing loop for profiles)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the Check calls here")
	flag.Parse()
	if *path == "" || *reps < 1 {
		flag.Usage()
		os.Exit(2)
	}
	t0 := time.Now()
	img, err := qcow2.OpenFile(*path, qcow2.Options{ReadOnly: true})
	if err != nil {
		log.Fatal(err)
	}
	topen := time.Since(t0)
	var prof *os.File
	if *cpuprofile != "" {
		if prof, err = os.Create(*cpuprofile); err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(prof); err != nil {
			log.Fatal(err)
		}
	}
	var res qcow2.CheckResult
	t1 := time.Now()
	for i := 0; i < *reps; i++ {
		res, err = img.Check(context.Background(), qcow2.CheckOptions{})
		if err != nil {
			log.Fatal(err)
		}
	}
	tcheck := time.Since(t1) / time.Duration(*reps)
	if prof != nil {
		pprof.StopCPUProfile()
		prof.Close()
	}
	if err := img.Close(); err != nil {
		log.Fatal(err)
	}
	out, _ := json.MarshalIndent(res, "", "    ")
	fmt.Println(string(out))
	fmt.Fprintf(os.Stderr, "qcow2check open=%.6fs check=%.6fs\n", topen.Seconds(), tcheck.Seconds())
	os.Exit(res.ExitCode())
}
