//go:build ignore

// genimage writes the convert benchmark's source image: a sparse raw file
// of SIZE bytes in which every other 1 MiB segment holds data (so half of
// the image is allocated). Each 64 KiB of data is 32 KiB of AES-128-CTR
// keystream (the key and IV of shared/corpus/make-corpus.sh; incompressible)
// followed by 32 KiB of repetitive text (compressible), so the data is
// about 50% compressible. The output is deterministic.
//
// Usage: go run genimage.go OUT SIZE_BYTES
package main

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"os"
	"strconv"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: go run genimage.go OUT SIZE_BYTES")
		os.Exit(2)
	}
	size, err := strconv.ParseInt(os.Args[2], 10, 64)
	if err != nil || size <= 0 || size%(2<<20) != 0 {
		fmt.Fprintln(os.Stderr, "SIZE_BYTES must be a positive multiple of 2 MiB")
		os.Exit(2)
	}
	key := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	block, _ := aes.NewCipher(key)
	stream := cipher.NewCTR(block, make([]byte, 16))
	f, err := os.Create(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := f.Truncate(size); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	const seg = 1 << 20
	buf := make([]byte, seg)
	text := []byte("blocklayer converts qemu images; ")
	for off := int64(0); off < size; off += 2 * seg {
		for i := 0; i < seg; i += 64 << 10 {
			rnd := buf[i : i+32<<10]
			clear(rnd)
			stream.XORKeyStream(rnd, rnd)
			txt := buf[i+32<<10 : i+64<<10]
			for j := 0; j < len(txt); j += len(text) {
				copy(txt[j:], text)
			}
			// A counter keeps the text from being a single repeated block.
			copy(txt, fmt.Sprintf("%016x", off+int64(i)))
		}
		if _, err := f.WriteAt(buf, off); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if err := f.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
