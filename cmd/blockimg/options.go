package main

import (
	"fmt"
	"strconv"
	"strings"
)

// optList holds "-o key=value,..." options in order. A comma inside a
// value is written ",,"; a key without '=' means key=on.
type optList struct {
	keys []string
	vals []string
	used map[string]bool
}

func parseOptList(l *optList, s string) (*optList, error) {
	if l == nil {
		l = &optList{used: map[string]bool{}}
	}
	if s == "" {
		return nil, fmt.Errorf("Invalid option list: %s", s)
	}
	var cur strings.Builder
	var parts []string
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			if i+1 < len(s) && s[i+1] == ',' {
				cur.WriteByte(',')
				i++
				continue
			}
			parts = append(parts, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteByte(s[i])
	}
	parts = append(parts, cur.String())
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("Invalid option list: %s", s)
		}
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			v = "on"
		}
		if k == "" {
			return nil, fmt.Errorf("Invalid option list: %s", s)
		}
		l.keys = append(l.keys, k)
		l.vals = append(l.vals, v)
	}
	return l, nil
}

// get returns the last value given for key and marks it used.
func (l *optList) get(key string) (string, bool) {
	if l == nil {
		return "", false
	}
	l.used[key] = true
	for i := len(l.keys) - 1; i >= 0; i-- {
		if l.keys[i] == key {
			return l.vals[i], true
		}
	}
	return "", false
}

func (l *optList) has(key string) bool {
	_, ok := l.get(key)
	return ok
}

// set records a value (used for -b/-F which map to backing_file/backing_fmt).
func (l *optList) set(key, val string) *optList {
	if l == nil {
		l = &optList{used: map[string]bool{}}
	}
	l.keys = append(l.keys, key)
	l.vals = append(l.vals, val)
	return l
}

// unused returns the first key nobody asked for.
func (l *optList) unused() string {
	if l == nil {
		return ""
	}
	for _, k := range l.keys {
		if !l.used[k] {
			return k
		}
	}
	return ""
}

func (l *optList) wantsHelp() bool {
	if l == nil {
		return false
	}
	for _, k := range l.keys {
		if k == "help" || k == "?" {
			return true
		}
	}
	return false
}

// getBool parses on/off/true/false/yes/no.
func (l *optList) getBool(key string, def bool) (bool, error) {
	v, ok := l.get(key)
	if !ok {
		return def, nil
	}
	switch v {
	case "on", "yes", "true", "y":
		return true, nil
	case "off", "no", "false", "n":
		return false, nil
	}
	return false, fmt.Errorf("Parameter '%s' expects 'on' or 'off'", key)
}

// getSize parses a size value (k/M/G suffixes).
func (l *optList) getSize(key string, def int64) (int64, error) {
	v, ok := l.get(key)
	if !ok {
		return def, nil
	}
	n, err := parseSize(v)
	if err != nil {
		return 0, fmt.Errorf("Parameter '%s' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.", key)
	}
	return n, nil
}

// getInt parses a decimal number.
func (l *optList) getInt(key string, def int64) (int64, error) {
	v, ok := l.get(key)
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 0, 64)
	if err != nil {
		return 0, fmt.Errorf("Parameter '%s' expects a number", key)
	}
	return n, nil
}
