package main

import (
	"fmt"
	"strings"
)

// A tiny getopt_long work-alike: short options from a spec string ("f:o:c"
// — a colon marks an option with an argument), long options with
// "--name=value" or "--name value", unambiguous prefixes of long names,
// clustered short flags ("-cp", "-fraw"), "--" to end options, and GNU
// argument permutation (options may follow operands), so command lines
// written for qemu-img parse the same way.

type longOpt struct {
	name   string
	hasArg bool
	key    string // the key reported for this option (defaults to "--name")
}

type parsedOpt struct {
	key string // "f" for -f, "--output" for --output
	val string
}

type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

func getopt(args []string, short string, longs []longOpt) (opts []parsedOpt, operands []string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			operands = append(operands, args[i+1:]...)
			return opts, operands, nil
		case strings.HasPrefix(a, "--"):
			name, val, hasVal := strings.Cut(a[2:], "=")
			lo, err := findLong(longs, name, a)
			if err != nil {
				return nil, nil, err
			}
			key := lo.key
			if key == "" {
				key = "--" + lo.name
			}
			if lo.hasArg {
				if !hasVal {
					if i+1 >= len(args) {
						return nil, nil, usagef("missing argument for option '%s'", a)
					}
					i++
					val = args[i]
				}
			} else if hasVal {
				return nil, nil, usagef("unrecognized option '%s'", a)
			}
			opts = append(opts, parsedOpt{key: key, val: val})
		case len(a) > 1 && a[0] == '-':
			for j := 1; j < len(a); j++ {
				c := a[j]
				k := strings.IndexByte(short, c)
				if k < 0 || c == ':' {
					// qemu-img names argv[optind-1]: this argument when
					// the bad letter ends it, else the one before.
					name := a
					if j < len(a)-1 && i > 0 {
						name = args[i-1]
					}
					return nil, nil, usagef("unrecognized option '%s'", name)
				}
				if k+1 < len(short) && short[k+1] == ':' {
					var val string
					if j+1 < len(a) {
						val = a[j+1:]
					} else {
						if i+1 >= len(args) {
							return nil, nil, usagef("missing argument for option '%s'", a)
						}
						i++
						val = args[i]
					}
					opts = append(opts, parsedOpt{key: string(c), val: val})
					break
				}
				opts = append(opts, parsedOpt{key: string(c)})
			}
		default:
			operands = append(operands, a)
		}
	}
	return opts, operands, nil
}

func findLong(longs []longOpt, name, arg string) (longOpt, error) {
	var found []longOpt
	for _, lo := range longs {
		if lo.name == name {
			return lo, nil
		}
		if name != "" && strings.HasPrefix(lo.name, name) {
			found = append(found, lo)
		}
	}
	if len(found) != 1 {
		// Unknown or ambiguous.
		return longOpt{}, usagef("unrecognized option '%s'", arg)
	}
	return found[0], nil
}
