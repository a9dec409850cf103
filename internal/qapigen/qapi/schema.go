package qapi

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrSchema is wrapped by every semantic error (unknown type, bad union...).
var ErrSchema = errors.New("qapi: invalid schema")

// Kind is the meta-type of a schema entity.
// Kind is a plain value: safe to copy and to read from many goroutines; do
// not modify one another goroutine uses.
type Kind string

// The entity kinds of a QAPI schema.
const (
	KindStruct    Kind = "struct"
	KindEnum      Kind = "enum"
	KindUnion     Kind = "union"
	KindAlternate Kind = "alternate"
	KindCommand   Kind = "command"
	KindEvent     Kind = "event"
)

// Member is one member of a struct, of command arguments or of event data.
// Member is a plain value: safe to copy and to read from many goroutines; do
// not modify one another goroutine uses.
type Member struct {
	Name     string
	Type     TypeRef
	Optional bool
}

// TypeRef names a type: a builtin, a defined type, or a list of one.
// TypeRef is a plain value: safe to copy and to read from many goroutines;
// do not modify one another goroutine uses.
type TypeRef struct {
	Name string
	List bool
}

// String renders the reference in QAPI notation: "int" or "[int]".
func (t TypeRef) String() string {
	if t.List {
		return "[" + t.Name + "]"
	}
	return t.Name
}

// Variant is one branch of a union or alternate.
// Variant is a plain value: safe to copy and to read from many goroutines;
// do not modify one another goroutine uses.
type Variant struct {
	Name string
	Type TypeRef
}

// Entity is one definition of a schema.
// Entity is a plain value: safe to copy and to read from many goroutines; do
// not modify one another goroutine uses.
type Entity struct {
	Name string
	Kind Kind
	File string
	Line int

	Base    string   // struct, union: base type ("" if none)
	Members []Member // struct: own members; command: inline arguments; event: inline data
	Values  []string // enum
	Prefix  string   // enum: 'prefix' override (informational)

	Discriminator string    // flat union ("" for a simple union)
	Variants      []Variant // union, alternate

	Data       string   // command, event: named data type ("" when inline or none)
	HasData    bool     // command, event: has arguments/data at all
	Returns    *TypeRef // command
	Gen        bool     // command: 'gen' (default true)
	SuccessRsp bool     // command: 'success-response' (default true)
}

// Schema is a parsed and checked set of schema files.
// A loaded Schema is not modified by its methods: safe to read from many
// goroutines.
type Schema struct {
	Entities []*Entity
	byName   map[string]*Entity
}

// Lookup returns the entity with the given name.
func (s *Schema) Lookup(name string) *Entity { return s.byName[name] }

// validName reports whether name is acceptable as a QAPI name: ASCII
// letters, digits, '-', '_', '.' and '+', not starting with punctuation
// (entity names must start with a letter).
func validName(name string, entity bool) bool {
	if name == "" || len(name) > 128 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		digit := c >= '0' && c <= '9'
		switch {
		case letter:
		case i == 0 && entity:
			return false
		case digit, c == '_':
		case i > 0 && (c == '-' || c == '.' || c == '+'):
		default:
			return false
		}
	}
	return true
}

// Builtins maps each QAPI builtin type to the JSON kind it accepts.
var Builtins = map[string]string{
	"str": "string", "number": "number", "bool": "boolean", "any": "value", "null": "null",
	"int": "integer", "int8": "integer", "int16": "integer", "int32": "integer", "int64": "integer",
	"uint8": "integer", "uint16": "integer", "uint32": "integer", "uint64": "integer", "size": "integer",
}

// IsBuiltin reports whether name is a QAPI builtin type.
func IsBuiltin(name string) bool { _, ok := Builtins[name]; return ok }

// Loader reads included files; the default reads the OS file system.
// Load calls its Loader from the calling goroutine only.
type Loader func(path string) ([]byte, error)

// Load parses the schema file at path and everything it includes (paths of
// includes are relative to the including file; each file is read once),
// then checks the result.
func Load(path string, read Loader) (*Schema, error) {
	if read == nil {
		read = os.ReadFile
	}
	s := &Schema{byName: map[string]*Entity{}}
	seen := map[string]bool{}
	if err := s.load(path, read, seen, 0); err != nil {
		return nil, err
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	return s, nil
}

// ParseSchema parses and checks a single file with no includes, for tests
// and fuzzing.
func ParseSchema(file string, src []byte) (*Schema, error) {
	return LoadFiles(map[string][]byte{file: src}, file)
}

// LoadFiles is Load over an in-memory set of files.
func LoadFiles(files map[string][]byte, main string) (*Schema, error) {
	return Load(main, func(p string) ([]byte, error) {
		b, ok := files[filepath.Clean(p)]
		if !ok {
			b, ok = files[p]
		}
		if !ok {
			return nil, fmt.Errorf("%w: include %q not found", ErrSchema, p)
		}
		return b, nil
	})
}

func (s *Schema) load(path string, read Loader, seen map[string]bool, depth int) error {
	path = filepath.Clean(path)
	if seen[path] {
		return nil
	}
	if depth > 16 {
		return fmt.Errorf("%w: includes nested too deeply at %s", ErrSchema, path)
	}
	seen[path] = true
	src, err := read(path)
	if err != nil {
		return err
	}
	exprs, err := Parse(filepath.Base(path), src)
	if err != nil {
		return err
	}
	for _, e := range exprs {
		if v, ok := e.Obj.Get("include"); ok {
			name, ok := v.(string)
			if !ok || len(e.Obj.Keys) != 1 {
				return s.errf(e, "'include' takes a single file name")
			}
			if err := s.load(filepath.Join(filepath.Dir(path), name), read, seen, depth+1); err != nil {
				return err
			}
			continue
		}
		if _, ok := e.Obj.Get("pragma"); ok {
			continue
		}
		ent, err := s.entity(e)
		if err != nil {
			return err
		}
		if _, dup := s.byName[ent.Name]; dup {
			return s.errf(e, "'%s' is defined twice", ent.Name)
		}
		s.byName[ent.Name] = ent
		s.Entities = append(s.Entities, ent)
	}
	return nil
}

func (s *Schema) errf(e Expr, format string, args ...any) error {
	return fmt.Errorf("%w: %s:%d: %s", ErrSchema, e.File, e.Line, fmt.Sprintf(format, args...))
}

var allowedKeys = map[Kind][]string{
	KindStruct:    {"data", "base"},
	KindEnum:      {"data", "prefix"},
	KindUnion:     {"data", "base", "discriminator"},
	KindAlternate: {"data"},
	KindCommand:   {"data", "returns", "gen", "success-response", "boxed", "allow-oob", "allow-preconfig"},
	KindEvent:     {"data", "boxed"},
}

func (s *Schema) entity(e Expr) (*Entity, error) {
	o := e.Obj
	var ent *Entity
	for _, k := range []Kind{KindStruct, KindEnum, KindUnion, KindAlternate, KindCommand, KindEvent} {
		if v, ok := o.Get(string(k)); ok {
			if ent != nil {
				return nil, s.errf(e, "expression has two meta-types")
			}
			name, ok := v.(string)
			if !ok || !validName(name, true) {
				return nil, s.errf(e, "'%s' must name the entity with letters, digits, '-', '_' or '.'", k)
			}
			ent = &Entity{Name: name, Kind: k, File: e.File, Line: e.Line, Gen: true, SuccessRsp: true}
		}
	}
	if ent == nil {
		return nil, s.errf(e, "expression has no meta-type (struct, enum, union, alternate, command, event, include)")
	}
	for _, k := range o.Keys {
		if k == string(ent.Kind) {
			continue
		}
		ok := false
		for _, a := range allowedKeys[ent.Kind] {
			ok = ok || a == k
		}
		if !ok {
			return nil, s.errf(e, "%s '%s': unknown key '%s'", ent.Kind, ent.Name, k)
		}
	}
	data, hasData := o.Get("data")
	strOpt := func(key string) (string, error) {
		v, ok := o.Get(key)
		if !ok {
			return "", nil
		}
		str, ok := v.(string)
		if !ok {
			return "", s.errf(e, "%s '%s': '%s' must be a string", ent.Kind, ent.Name, key)
		}
		return str, nil
	}
	boolOpt := func(key string, dflt bool) (bool, error) {
		v, ok := o.Get(key)
		if !ok {
			return dflt, nil
		}
		b, ok := v.(bool)
		if !ok {
			return false, s.errf(e, "%s '%s': '%s' must be true or false", ent.Kind, ent.Name, key)
		}
		return b, nil
	}
	var err error
	switch ent.Kind {
	case KindStruct:
		if ent.Base, err = strOpt("base"); err != nil {
			return nil, err
		}
		if !hasData {
			data = &Object{Vals: map[string]Value{}}
		}
		if ent.Members, err = s.members(e, ent, data); err != nil {
			return nil, err
		}
	case KindEnum:
		if ent.Prefix, err = strOpt("prefix"); err != nil {
			return nil, err
		}
		list, ok := data.([]Value)
		if !ok {
			return nil, s.errf(e, "enum '%s': 'data' must be a list", ent.Name)
		}
		seen := map[string]bool{}
		for _, v := range list {
			name, ok := v.(string)
			if obj, isObj := v.(*Object); isObj {
				n, _ := obj.Get("name")
				name, ok = n.(string)
			}
			if !ok || !validName(name, false) {
				return nil, s.errf(e, "enum '%s': values must be names (letters, digits, '-', '_', '.')", ent.Name)
			}
			if seen[name] {
				return nil, s.errf(e, "enum '%s': duplicate value '%s'", ent.Name, name)
			}
			seen[name] = true
			ent.Values = append(ent.Values, name)
		}
	case KindUnion, KindAlternate:
		if ent.Kind == KindUnion {
			if ent.Base, err = strOpt("base"); err != nil {
				return nil, err
			}
			if ent.Discriminator, err = strOpt("discriminator"); err != nil {
				return nil, err
			}
			if (ent.Base == "") != (ent.Discriminator == "") {
				return nil, s.errf(e, "union '%s': 'base' and 'discriminator' go together", ent.Name)
			}
		}
		obj, ok := data.(*Object)
		if !ok || len(obj.Keys) == 0 {
			return nil, s.errf(e, "%s '%s': 'data' must be a non-empty dictionary", ent.Kind, ent.Name)
		}
		for _, k := range obj.Keys {
			if !validName(k, false) {
				return nil, s.errf(e, "%s '%s': invalid branch name '%s'", ent.Kind, ent.Name, k)
			}
			t, err := s.typeRef(e, ent, k, obj.Vals[k])
			if err != nil {
				return nil, err
			}
			if t.List && ent.Kind == KindAlternate {
				return nil, s.errf(e, "alternate '%s': branch '%s' cannot be a list", ent.Name, k)
			}
			ent.Variants = append(ent.Variants, Variant{Name: k, Type: t})
		}
	case KindCommand, KindEvent:
		if hasData {
			ent.HasData = true
			switch d := data.(type) {
			case string:
				ent.Data = d
			case *Object:
				if ent.Members, err = s.members(e, ent, d); err != nil {
					return nil, err
				}
			default:
				return nil, s.errf(e, "%s '%s': 'data' must be a type name or a dictionary", ent.Kind, ent.Name)
			}
		}
		if ent.Kind == KindCommand {
			if r, ok := o.Get("returns"); ok {
				t, err := s.typeRef(e, ent, "returns", r)
				if err != nil {
					return nil, err
				}
				ent.Returns = &t
			}
			if ent.Gen, err = boolOpt("gen", true); err != nil {
				return nil, err
			}
			if ent.SuccessRsp, err = boolOpt("success-response", true); err != nil {
				return nil, err
			}
			for _, k := range []string{"boxed", "allow-oob", "allow-preconfig"} {
				if _, err := boolOpt(k, false); err != nil {
					return nil, err
				}
			}
		} else if _, err := boolOpt("boxed", false); err != nil {
			return nil, err
		}
	}
	return ent, nil
}

func (s *Schema) members(e Expr, ent *Entity, data Value) ([]Member, error) {
	obj, ok := data.(*Object)
	if !ok {
		return nil, s.errf(e, "%s '%s': 'data' must be a dictionary", ent.Kind, ent.Name)
	}
	var ms []Member
	seen := map[string]bool{}
	for _, k := range obj.Keys {
		m := Member{Name: k}
		if strings.HasPrefix(k, "*") {
			m.Name, m.Optional = k[1:], true
		}
		if !validName(m.Name, false) {
			return nil, s.errf(e, "%s '%s': invalid member name '%s'", ent.Kind, ent.Name, m.Name)
		}
		if seen[m.Name] {
			return nil, s.errf(e, "%s '%s': duplicate member '%s'", ent.Kind, ent.Name, m.Name)
		}
		seen[m.Name] = true
		t, err := s.typeRef(e, ent, m.Name, obj.Vals[k])
		if err != nil {
			return nil, err
		}
		m.Type = t
		ms = append(ms, m)
	}
	return ms, nil
}

func (s *Schema) typeRef(e Expr, ent *Entity, what string, v Value) (TypeRef, error) {
	switch t := v.(type) {
	case string:
		if !validName(t, true) {
			break
		}
		return TypeRef{Name: t}, nil
	case []Value:
		if len(t) == 1 {
			if n, ok := t[0].(string); ok && validName(n, true) {
				return TypeRef{Name: n, List: true}, nil
			}
		}
	case *Object:
		// Modern long form: {'type': T, ...}
		if tv, ok := t.Get("type"); ok {
			if _, nested := tv.(*Object); !nested {
				return s.typeRef(e, ent, what, tv)
			}
		}
	}
	return TypeRef{}, s.errf(e, "%s '%s': '%s' must be a type name or a one-element list of one", ent.Kind, ent.Name, what)
}

// check resolves every reference and enforces the structural rules the
// generator relies on.
func (s *Schema) check() error {
	errAt := func(ent *Entity, format string, args ...any) error {
		return fmt.Errorf("%w: %s:%d: %s '%s': %s", ErrSchema, ent.File, ent.Line, ent.Kind, ent.Name, fmt.Sprintf(format, args...))
	}
	typeOK := func(t TypeRef) bool {
		if IsBuiltin(t.Name) {
			return true
		}
		d := s.byName[t.Name]
		return d != nil && d.Kind != KindCommand && d.Kind != KindEvent
	}
	for _, ent := range s.Entities {
		if IsBuiltin(ent.Name) {
			return errAt(ent, "redefines a builtin type")
		}
		for _, m := range ent.Members {
			if !typeOK(m.Type) {
				return errAt(ent, "member '%s' has unknown type '%s'", m.Name, m.Type)
			}
		}
		switch ent.Kind {
		case KindStruct:
			if _, err := s.AllMembers(ent); err != nil {
				return errAt(ent, "%v", err)
			}
		case KindUnion:
			if ent.Discriminator == "" {
				for _, v := range ent.Variants {
					if !typeOK(v.Type) {
						return errAt(ent, "branch '%s' has unknown type '%s'", v.Name, v.Type)
					}
				}
				continue
			}
			base := s.byName[ent.Base]
			if base == nil || base.Kind != KindStruct {
				return errAt(ent, "base '%s' is not a struct", ent.Base)
			}
			bm, err := s.AllMembers(base)
			if err != nil {
				return errAt(ent, "%v", err)
			}
			var disc *Member
			names := map[string]bool{}
			for i := range bm {
				names[bm[i].Name] = true
				if bm[i].Name == ent.Discriminator {
					disc = &bm[i]
				}
			}
			if disc == nil || disc.Optional || disc.Type.List {
				return errAt(ent, "discriminator '%s' is not a mandatory member of the base", ent.Discriminator)
			}
			enum := s.byName[disc.Type.Name]
			if enum == nil || enum.Kind != KindEnum {
				return errAt(ent, "discriminator '%s' is not of an enum type", ent.Discriminator)
			}
			for _, v := range ent.Variants {
				if !contains(enum.Values, v.Name) {
					return errAt(ent, "branch '%s' is not a value of %s", v.Name, enum.Name)
				}
				vt := s.byName[v.Type.Name]
				if v.Type.List || vt == nil || vt.Kind != KindStruct {
					return errAt(ent, "branch '%s' must be a struct type", v.Name)
				}
				vm, err := s.AllMembers(vt)
				if err != nil {
					return errAt(ent, "%v", err)
				}
				for _, m := range vm {
					if names[m.Name] {
						return errAt(ent, "branch '%s' member '%s' clashes with the base", v.Name, m.Name)
					}
				}
			}
		case KindAlternate:
			kinds := map[string]string{}
			for _, v := range ent.Variants {
				if !typeOK(v.Type) {
					return errAt(ent, "branch '%s' has unknown type '%s'", v.Name, v.Type)
				}
				k := s.JSONKind(v.Type)
				if k == "value" {
					return errAt(ent, "branch '%s' of type '%s' is ambiguous", v.Name, v.Type)
				}
				if o, dup := kinds[k]; dup {
					return errAt(ent, "branches '%s' and '%s' both take a JSON %s", o, v.Name, k)
				}
				kinds[k] = v.Name
			}
		case KindCommand, KindEvent:
			if ent.Data != "" {
				d := s.byName[ent.Data]
				if d == nil || d.Kind != KindStruct {
					return errAt(ent, "data '%s' is not a struct", ent.Data)
				}
			}
			if ent.Returns != nil && !typeOK(*ent.Returns) {
				return errAt(ent, "returns unknown type '%s'", ent.Returns)
			}
		}
	}
	return nil
}

// JSONKind returns the JSON kind a value of type t has on the wire:
// "object", "array", "string", "integer", "number", "boolean", "null" or
// "value" (any).
func (s *Schema) JSONKind(t TypeRef) string {
	if t.List {
		return "array"
	}
	if k, ok := Builtins[t.Name]; ok {
		if k == "integer" {
			return "number" // integers and numbers share the JSON kind
		}
		return k
	}
	switch d := s.byName[t.Name]; {
	case d == nil:
		return "value"
	case d.Kind == KindEnum:
		return "string"
	case d.Kind == KindAlternate:
		return "value"
	default:
		return "object"
	}
}

// AllMembers returns the members of a struct including those of its bases,
// base members first.
func (s *Schema) AllMembers(ent *Entity) ([]Member, error) {
	var chain []*Entity
	for e := ent; e != nil; {
		for _, c := range chain {
			if c == e {
				return nil, fmt.Errorf("base chain of '%s' loops", ent.Name)
			}
		}
		chain = append(chain, e)
		if e.Base == "" {
			break
		}
		b := s.byName[e.Base]
		if b == nil || b.Kind != KindStruct {
			return nil, fmt.Errorf("base '%s' of '%s' is not a struct", e.Base, e.Name)
		}
		e = b
	}
	var out []Member
	seen := map[string]bool{}
	for i := len(chain) - 1; i >= 0; i-- {
		for _, m := range chain[i].Members {
			if seen[m.Name] {
				return nil, fmt.Errorf("member '%s' of '%s' clashes with its base", m.Name, chain[i].Name)
			}
			seen[m.Name] = true
			out = append(out, m)
		}
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
