module github.com/blocklayer/blocklayer

go 1.26
