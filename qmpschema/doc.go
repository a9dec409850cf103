// Package qmpschema holds Go types generated from the QAPI block-core
// schema (QEMU 2.4, kept comment-free in schema/) and a QMP server that
// speaks the QEMU Machine Protocol with them.
//
// # Generated types
//
// Every schema entity has a Go type with the schema's exact wire names:
//
//   - struct: a Go struct; members of its base come first, flattened.
//   - enum: a string type with one constant per value; UnmarshalJSON
//     refuses values the schema does not list (*EnumError).
//   - flat union (BlockdevOptions): the base members plus one pointer field
//     per branch; the branch matching the discriminator is encoded into the
//     same JSON object and filled when decoding.
//   - simple union (ImageInfoSpecific): Type plus one pointer per branch,
//     {"type": ..., "data": ...} on the wire.
//   - alternate (BlockdevRef, Qcow2OverlapChecks): one pointer per branch,
//     exactly one set; decoding picks the branch by the JSON kind.
//   - command: inline arguments become <Name>Args (block_resize ->
//     BlockResizeArgs); event data becomes <Name>Event (BLOCK_IO_ERROR ->
//     BlockIoErrorEvent), which implements Event.
//
// Builtins map exactly: int -> int64, intN/uintN -> intN/uintN, size ->
// uint64, number -> float64, bool -> bool, str -> string, any ->
// json.RawMessage.
//
// Optional members are distinguishable from zero values: they are pointers
// (nil = absent, encoded with omitempty), except optional lists and 'any',
// whose nil value already means absent (encoded with omitzero, so a
// non-nil empty list still encodes as []). Mandatory lists encode nil as [].
//
// Decoding the Go types is lenient about members the schema does not know
// (newer QEMU adds some), so replies of modern QEMU decode; the QMP server
// checks command arguments strictly against the schema before decoding.
//
// Values of the generated types are plain data: safe for concurrent reads,
// not for concurrent mutation.
//
// # Introspection
//
// Entities lists every definition of the schema files; Lookup finds one by
// name (also the implicit argument/event structs); NewValue returns a
// pointer to a fresh value of the Go type of a type, command or event.
//
// # Server
//
// Server speaks QMP on any net.Listener or net.Conn. See Server and Register.
//
// The generated files are written by internal/qapigen; regenerate with
// `go generate ./qmpschema`. TestGeneratedUpToDate fails when they are stale.
package qmpschema

//go:generate go run ../internal/qapigen -pkg qmpschema -o . schema/block-core.json
