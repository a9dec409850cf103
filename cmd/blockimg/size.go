package main

import (
	"errors"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

var (
	errSizeSyntax = errors.New("invalid size")
	errSizeRange  = errors.New("size out of range")
)

// sizeMul returns the multiplier for a qemu size suffix (case-insensitive
// B, K, M, G, T, P, E; powers of 1024), or 0 for anything else.
func sizeMul(c byte) uint64 {
	switch c | 0x20 {
	case 'b':
		return 1
	case 'k':
		return 1 << 10
	case 'm':
		return 1 << 20
	case 'g':
		return 1 << 30
	case 't':
		return 1 << 40
	case 'p':
		return 1 << 50
	case 'e':
		return 1 << 60
	}
	return 0
}

// parseSizeU parses a size the way qemu's strtosz does: leading white
// space and '+' allowed, a decimal integer with an optional fraction
// ("1.5G") or a hex integer ("0x100", suffix deprecated but accepted), an
// optional suffix; bytes by default. A fraction needs a suffix other than
// B. The result is rounded to the nearest byte. hexSuffix reports the
// deprecated hex-with-suffix form.
func parseSizeU(s string) (val uint64, hexSuffix bool, err error) {
	i := 0
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		if s[i] == '-' {
			return 0, false, errSizeSyntax
		}
		i++
	}
	start := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == start {
		return 0, false, errSizeSyntax
	}
	val, err = strconv.ParseUint(s[start:i], 10, 64)
	if err != nil {
		return 0, false, errSizeRange
	}
	var frac uint64 // 0.64 fixed point
	hex := false
	if val == 0 && i < len(s) && s[i]|0x20 == 'x' && i-start == 1 {
		j := i + 1
		for j < len(s) && isHex(s[j]) {
			j++
		}
		if j == i+1 {
			// "0x" without digits: strtoull stops after the 0.
			return 0, false, errSizeSyntax
		}
		val, err = strconv.ParseUint(s[i+1:j], 16, 64)
		if err != nil {
			return 0, false, errSizeRange
		}
		i = j
		if i < len(s) && s[i] == '.' {
			return 0, false, errSizeSyntax
		}
		hex = true
	} else if i < len(s) && s[i] == '.' {
		j := i + 1
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j == i+1 {
			i++ // "1.k": a lone dot is skipped
		} else {
			// An exponent (".5e3", ".5e+3") makes the whole input invalid.
			if j < len(s) && s[j]|0x20 == 'e' {
				k := j + 1
				if k < len(s) && (s[k] == '+' || s[k] == '-') {
					k++
				}
				if k < len(s) && s[k] >= '0' && s[k] <= '9' {
					return 0, false, errSizeSyntax
				}
			}
			f, perr := strconv.ParseFloat("0"+s[i:j], 64)
			if perr != nil {
				return 0, false, errSizeSyntax
			}
			fx := f * 0x1p64
			if fx >= 0x1p64 {
				frac = math.MaxUint64
			} else {
				frac = uint64(fx)
			}
			i = j
		}
	}
	mul := uint64(1)
	if i < len(s) {
		if m := sizeMul(s[i]); m != 0 {
			mul = m
			i++
			hexSuffix = hex
		}
	}
	if i != len(s) {
		return 0, false, errSizeSyntax
	}
	if mul == 1 {
		if frac != 0 {
			return 0, false, errSizeSyntax
		}
		return val, false, nil
	}
	hi, lo := bits.Mul64(val, mul)
	fhi, flo := bits.Mul64(frac, mul)
	var c uint64
	lo, c = bits.Add64(lo, fhi, 0)
	hi += c
	lo, c = bits.Add64(lo, flo>>63, 0) // round half up
	hi += c
	if hi != 0 {
		return 0, hexSuffix, errSizeRange
	}
	return lo, hexSuffix, nil
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'f'
}

// parseSize parses a size in [0, MaxInt64].
func parseSize(s string) (int64, error) {
	v, _, err := parseSizeU(s)
	if err != nil {
		return 0, err
	}
	if v > math.MaxInt64 {
		return 0, errSizeRange
	}
	return int64(v), nil
}

// cvtnum parses a size option for the named parameter as qemu-img 7.2's
// cvtnum_full does, printing its messages on e's stderr: the hex-suffix
// deprecation warning, and on failure the syntax or range error. ok is
// false after an error.
func (e *env) cvtnum(name, s string, lo, hi int64) (v int64, ok bool) {
	u, hexSuffix, err := parseSizeU(s)
	if err != nil && !errors.Is(err, errSizeRange) {
		e.errorf("Invalid %s specified. You may use k, M, G, T, P or E suffixes for\n"+
			"kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.", name)
		return 0, false
	}
	if err == nil && hexSuffix {
		e.errorf("warning: Using a multiplier suffix on hex numbers is deprecated: %s", s)
	}
	if err != nil || u > uint64(hi) || int64(u) < lo {
		e.errorf("Invalid %s specified. Must be between %d and %d.", name, lo, hi)
		return 0, false
	}
	return int64(u), true
}

// parseUlong parses a number as qemu_strtoul with base 0 does: leading
// white space, an optional sign, "0x" for hex, a leading 0 for octal, and
// nothing after the digits. A negative number wraps (so it is huge);
// ok is false for malformed or overflowing input.
func parseUlong(s string) (uint64, bool) {
	s = strings.TrimLeft(s, " \t\n\v\f\r")
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	base := uint64(10)
	switch {
	case len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && isHex(s[2]):
		base, s = 16, s[2:]
	case len(s) > 1 && s[0] == '0':
		base, s = 8, s[1:]
	}
	if s == "" {
		return 0, false
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		ch := s[i]
		var d uint64
		switch {
		case ch >= '0' && ch <= '9':
			d = uint64(ch - '0')
		case ch >= 'a' && ch <= 'f':
			d = uint64(ch-'a') + 10
		case ch >= 'A' && ch <= 'F':
			d = uint64(ch-'A') + 10
		default:
			return 0, false
		}
		if d >= base {
			return 0, false
		}
		if v > (math.MaxUint64-d)/base {
			return 0, false
		}
		v = v*base + d
	}
	if neg {
		v = -v
	}
	return v, true
}

// sizeToStr formats a byte count as qemu's size_to_str does ("10 MiB",
// "3.63 MiB"): three significant digits and a binary prefix.
func sizeToStr(v uint64) string {
	suffixes := []string{"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"}
	_, e := math.Frexp(float64(v) / (1000.0 / 1024.0))
	i := (e - 1) / 10
	if i < 0 {
		i = 0
	}
	if i >= len(suffixes) {
		i = len(suffixes) - 1
	}
	div := float64(uint64(1) << (uint(i) * 10))
	return formatG3(float64(v)/div) + " " + suffixes[i] + "B"
}

// formatG3 formats like C's "%0.3g".
func formatG3(f float64) string {
	s := strconv.FormatFloat(f, 'g', 3, 64)
	if strings.Contains(s, "e") {
		// C prints at least two exponent digits: 1e+03.
		mant, exp, _ := strings.Cut(s, "e")
		sign := exp[0]
		digits := exp[1:]
		if len(digits) < 2 {
			digits = "0" + digits
		}
		s = mant + "e" + string(sign) + digits
	}
	return s
}
