package qmpschema

import (
	"errors"
	"fmt"
)

// ErrInvalid is wrapped by all decoding errors of the generated types.
var ErrInvalid = errors.New("qmpschema: invalid value")

// EnumError reports a value an enum does not accept.
// EnumError is a plain value: safe to copy and to read from many goroutines;
// do not modify one another goroutine uses.
type EnumError struct {
	Type  string
	Value string
}

func (e *EnumError) Error() string {
	return fmt.Sprintf("qmpschema: %s does not accept value '%s'", e.Type, e.Value)
}

// Unwrap returns ErrInvalid.
func (e *EnumError) Unwrap() error { return ErrInvalid }

// MissingMemberError reports a missing union discriminator or data.
// MissingMemberError is a plain value: safe to copy and to read from many
// goroutines; do not modify one another goroutine uses.
type MissingMemberError struct {
	Type   string
	Member string
}

func (e *MissingMemberError) Error() string {
	return fmt.Sprintf("qmpschema: %s lacks member '%s'", e.Type, e.Member)
}

// Unwrap returns ErrInvalid.
func (e *MissingMemberError) Unwrap() error { return ErrInvalid }

// AlternateError reports a JSON value of a kind no branch of an alternate
// takes.
// AlternateError is a plain value: safe to copy and to read from many
// goroutines; do not modify one another goroutine uses.
type AlternateError struct {
	Type string
	Kind string // JSON kind found: object, array, string, number, boolean, null
}

func (e *AlternateError) Error() string {
	return fmt.Sprintf("qmpschema: %s has no branch for a JSON %s", e.Type, e.Kind)
}

// Unwrap returns ErrInvalid.
func (e *AlternateError) Unwrap() error { return ErrInvalid }

// BranchError reports, when encoding, a union or alternate whose selected
// branch is nil (Branch is empty for an alternate with no branch set).
// BranchError is a plain value: safe to copy and to read from many
// goroutines; do not modify one another goroutine uses.
type BranchError struct {
	Type   string
	Branch string
}

func (e *BranchError) Error() string {
	if e.Branch == "" {
		return fmt.Sprintf("qmpschema: %s has no branch set", e.Type)
	}
	return fmt.Sprintf("qmpschema: %s branch '%s' is nil", e.Type, e.Branch)
}

// Unwrap returns ErrInvalid.
func (e *BranchError) Unwrap() error { return ErrInvalid }
