module github.com/blocklayer/blocklayer

go 1.26.0

require golang.org/x/sys v0.50.0

require (
	github.com/bits-and-blooms/bitset v1.29.0 // indirect
	github.com/digitalocean/go-libvirt v0.0.0-20220804181439-8648fbde413e // indirect
	github.com/digitalocean/go-qemu v0.0.0-20250212194115-ee9b0668d242 // indirect
	github.com/google/btree v1.1.3 // indirect
	github.com/klauspost/compress v1.20.4 // indirect
	golang.org/x/time v0.16.0 // indirect
)
