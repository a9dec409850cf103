package qapi_test

import (
	"fmt"

	"github.com/blocklayer/blocklayer/internal/qapigen/qapi"
)

func Example() {
	src := []byte(`
# A tiny schema.
{ 'enum': 'Color', 'data': [ 'red', 'dark-blue' ] }
{ 'struct': 'Paint', 'data': { 'color': 'Color', '*coats': 'uint8' } }
{ 'command': 'paint', 'data': { 'what': 'Paint' }, 'returns': ['str'] }
`)
	s, err := qapi.ParseSchema("paint.json", src)
	if err != nil {
		panic(err)
	}
	for _, e := range s.Entities {
		fmt.Println(e.Kind, e.Name)
	}
	files, err := qapi.Generate(s, "paint")
	if err != nil {
		panic(err)
	}
	fmt.Println(len(files), qapi.Camel("dark-blue"), qapi.ArgsTypeName("paint"))
	// Output:
	// enum Color
	// struct Paint
	// command paint
	// 4 DarkBlue PaintArgs
}
