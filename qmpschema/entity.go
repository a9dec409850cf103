package qmpschema

import "fmt"

// Kind is the meta-type of a schema entity.
// Kind is a plain value: safe to copy and to read from many goroutines; do
// not modify one another goroutine uses.
type Kind string

// Entity kinds.
const (
	KindStruct    Kind = "struct"
	KindEnum      Kind = "enum"
	KindUnion     Kind = "union"
	KindAlternate Kind = "alternate"
	KindCommand   Kind = "command"
	KindEvent     Kind = "event"
)

// Member is a member of a struct, of command arguments or of event data.
// Type is in QAPI notation: a type name, or "[T]" for a list of T.
// Member is a plain value: safe to copy and to read from many goroutines; do
// not modify one another goroutine uses.
type Member struct {
	Name     string
	Type     string
	Optional bool
}

// Variant is a branch of a union or an alternate.
// Variant is a plain value: safe to copy and to read from many goroutines;
// do not modify one another goroutine uses.
type Variant struct {
	Name string
	Type string
}

// Entity describes one schema definition. Entity values are read-only
// descriptions; the slices must not be modified.
type Entity struct {
	Name string
	Kind Kind

	// Base is the base struct of a struct or flat union.
	Base string
	// Members are a struct's own members (not its base's), or the inline
	// members of a command's arguments or an event's data.
	Members []Member
	// Values are the values of an enum.
	Values []string
	// Discriminator is the base member selecting a flat union's branch;
	// empty for simple unions.
	Discriminator string
	// Variants are the branches of a union or alternate.
	Variants []Variant
	// Data names the struct holding a command's arguments or an event's
	// data: a schema type, or the implicit struct (BlockResizeArgs,
	// BlockIoErrorEvent) for inline members. Empty when there are none.
	Data string
	// Returns is a command's return type ("" for none).
	Returns string
	// Gen and SuccessResponse are a command's 'gen' and
	// 'success-response' flags (both default true).
	Gen, SuccessResponse bool
	// Implicit marks structs and enums that the schema defines inline.
	// Entities never returns them; Lookup does.
	Implicit bool
}

var lookupTable = func() map[string]*Entity {
	m := make(map[string]*Entity, len(schemaEntities)+len(implicitEntities))
	for i := range schemaEntities {
		m[schemaEntities[i].Name] = &schemaEntities[i]
	}
	for i := range implicitEntities {
		m[implicitEntities[i].Name] = &implicitEntities[i]
	}
	return m
}()

// Entities returns every entity defined by the schema files, in source
// order (common.json's, included first, then block-core.json's). The
// result is a fresh slice; safe for concurrent use.
func Entities() []Entity {
	return append([]Entity(nil), schemaEntities...)
}

// Lookup returns the entity with the given name: a defined entity, or an
// implicit one (command arguments, event data, simple-union branch enum).
func Lookup(name string) (Entity, bool) {
	e, ok := lookupTable[name]
	if !ok {
		return Entity{}, false
	}
	return *e, true
}

// NewValue returns a pointer to a fresh zero value of the Go type for name:
// a type name (struct, enum, union, alternate, or implicit struct), a
// command (its arguments type; *Empty when it takes none) or an event (its
// data type; *Empty when it has none).
func NewValue(name string) (any, error) {
	f, ok := constructors[name]
	if !ok {
		return nil, fmt.Errorf("qmpschema: no type, command or event named %q", name)
	}
	return f(), nil
}

// Empty is the Go type of absent arguments, data and return values; it
// encodes as {}.
// Empty is a plain value: safe to copy and to read from many goroutines; do
// not modify one another goroutine uses.
type Empty struct{}

// Null is the Go type of the QAPI builtin 'null': it encodes as, and
// decodes only from, JSON null.
// Null is a plain value: safe to copy and to read from many goroutines; do
// not modify one another goroutine uses.
type Null struct{}

// MarshalJSON returns null.
func (Null) MarshalJSON() ([]byte, error) { return []byte("null"), nil }

// UnmarshalJSON accepts only null.
func (*Null) UnmarshalJSON(b []byte) error {
	if k := jsonKindOf(b); k != "null" {
		return fmt.Errorf("%w: null expected, not a JSON %s", ErrInvalid, k)
	}
	return nil
}

// Event is implemented by the generated event data types.
// Event values are plain data: safe to read from many goroutines.
type Event interface {
	EventName() string
}
