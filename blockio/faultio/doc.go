// Package faultio makes storage misbehave on purpose, doing blkdebug's job
// as a library.
//
// Injector wraps any blockio.Device and fails chosen requests: a Rule
// selects operation kinds (read, write, flush, discard, write zeroes), an
// optional byte range, the Nth matching request, and whether it fires once
// or every time after; the failure is an errno of choice wrapped in a
// *blockio.OpError, so ENOSPC satisfies errors.Is(err, blockio.ErrNoSpace).
//
// CrashDevice simulates a power cut. It remembers every write that no
// completed Flush has covered yet, and Crash returns what the disk could
// hold if power failed at that moment: flushed data always survives, and
// each unflushed write survives or is lost independently per 512-byte
// sector, respecting the order of overwrites of the same sector. Format
// packages put their image on a CrashDevice, crash it at every step of an
// update and check that the image reopens cleanly with every flushed write
// intact.
//
// The two combine: an Injector over a CrashDevice with a rule failing the
// Nth mutating request and all after it models the power failing just
// before request N; crash images of the CrashDevice then show every state
// the update could leave (see ExampleCrashDevice_everyPoint).
package faultio
