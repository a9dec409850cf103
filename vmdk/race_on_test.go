//go:build race

package vmdk

const raceEnabled = true
