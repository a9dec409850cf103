//go:build linux

package blockio_test

import (
	"os"
	"syscall"
)

func blocksOf(st os.FileInfo) int64 { return st.Sys().(*syscall.Stat_t).Blocks }
