package qmpschema

import (
	"errors"
	"fmt"
)

// Error is a QMP error reply: {"error": {"class": Class, "desc": Desc}}.
// Command handlers return it to choose the class; any other error becomes
// a GenericError with the error's text.
// Error is a plain value: safe to copy and to read from many goroutines; do
// not modify one another goroutine uses.
type Error struct {
	Class ErrorClass
	Desc  string
}

func (e *Error) Error() string { return string(e.Class) + ": " + e.Desc }

// Errorf returns an *Error of the given class with a formatted description.
func Errorf(class ErrorClass, format string, args ...any) *Error {
	return &Error{Class: class, Desc: fmt.Sprintf(format, args...)}
}

// asQMPError turns any error into the class and description sent on the wire.
func asQMPError(err error) *Error {
	var qe *Error
	if errors.As(err, &qe) {
		if qe.Class == "" {
			return &Error{Class: ErrorClassGenericError, Desc: qe.Desc}
		}
		return qe
	}
	return &Error{Class: ErrorClassGenericError, Desc: err.Error()}
}
