// Package qapi parses QAPI schema files (the JSON dialect QEMU describes
// its QMP interface in: single-quoted strings, '#' comments, includes) into
// a checked Schema, and generates Go types from it. internal/qapigen is its
// command-line front end; qmpschema holds the generated code.
//
// Supported: include, struct (with base), enum, flat union (base +
// discriminator), simple union, alternate, command (data inline or named,
// returns, gen, success-response) and event. Pragmas are ignored.
//
// Errors wrap ErrSyntax (malformed text, with file:line:col) or ErrSchema
// (unknown types, bad unions, clashes). Functions are safe for concurrent
// use; a Schema is read-only after Load.
package qapi
