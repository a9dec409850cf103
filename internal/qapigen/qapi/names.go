package qapi

import (
	"go/token"
	"strings"
	"unicode"
)

// initialisms are words written all-caps in Go names.
var initialisms = map[string]string{"id": "ID", "uuid": "UUID", "url": "URL", "json": "JSON"}

// Camel turns a QAPI name ("node-name", "iops_rd", "l1_grow.alloc_table",
// "BLOCK_IO_ERROR") into an exported Go identifier ("NodeName", "IopsRd",
// "L1GrowAllocTable", "BlockIoError").
func Camel(name string) string {
	parts := strings.FieldsFunc(name, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
	allUpper := strings.ToUpper(name) == name
	var b strings.Builder
	for _, p := range parts {
		if allUpper {
			p = strings.ToLower(p)
		}
		if up, ok := initialisms[strings.ToLower(p)]; ok && strings.ToLower(p) == p {
			b.WriteString(up)
			continue
		}
		r := []rune(p)
		r[0] = unicode.ToUpper(r[0])
		b.WriteString(string(r))
	}
	s := b.String()
	if s == "" || !unicode.IsLetter([]rune(s)[0]) {
		s = "X" + s
	}
	return s
}

// TypeName is the Go name of a defined QAPI type: kept as written when it
// is already an exported identifier, camel-cased otherwise.
func TypeName(name string) string {
	if token.IsIdentifier(name) && token.IsExported(name) {
		return name
	}
	return Camel(name)
}

// ArgsTypeName is the Go name of the implicit arguments struct of a command
// with inline arguments.
func ArgsTypeName(command string) string { return Camel(command) + "Args" }

// EventTypeName is the Go name of the data struct of an event.
func EventTypeName(event string) string { return Camel(event) + "Event" }

// KindTypeName is the Go name of the implicit enum of a simple union's
// branch names.
func KindTypeName(union string) string { return TypeName(union) + "Kind" }
