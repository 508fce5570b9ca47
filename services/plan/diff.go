package plan

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/detourdev/detour/events/config"
)

// Ops of a Change.
const (
	Added   = "+"
	Removed = "-"
	Changed = "~"
)

// Change is one difference between two configurations: an element added or removed, or a field
// changed.
type Change struct {
	// Op is "+", "-" or "~".
	Op string `json:"op"`
	// Path names the element or field, with list elements by name: apps[shop].check.interval.
	Path string `json:"path"`
	// Before and After are the field's values as written in YAML (changes only).
	Before string `json:"before,omitempty"`
	After  string `json:"after,omitempty"`
}

func (c Change) String() string {
	if c.Op == Changed {
		return fmt.Sprintf("%s %s: %s → %s", c.Op, c.Path, c.Before, c.After)
	}
	return c.Op + " " + c.Path
}

// redacted stands for both values of a change that only a secret makes.
const redacted = "(secret)"

// Diff lists what changes from before to after (nil: nothing is running), in document order:
// zones, apps, edges, dns. Both configurations are compared after defaults, so spelling a
// default out is no change. The values shown are those of the copies with their secrets
// redacted (config's secretFields). With compareSecrets, a change that only a secret makes is
// listed too, with neither value shown; without, only the redacted copies are compared, so
// what Diff says does not depend on a secret's value: for who may not see the secrets (an API
// read token), who would otherwise tell from the changes whether a guessed secret is the
// running one.
func Diff(before, after *config.Config, compareSecrets bool) []Change {
	if before == nil {
		before = &config.Config{}
		before.ApplyDefaults()
	}
	var shown []Change
	diff(&shown, "", reflect.ValueOf(*before.WithSecretsRedacted()), reflect.ValueOf(*after.WithSecretsRedacted()))
	if !compareSecrets {
		return shown
	}
	var out []Change
	diff(&out, "", reflect.ValueOf(*before), reflect.ValueOf(*after))
	values := make(map[string]Change, len(shown))
	for _, s := range shown {
		values[s.Op+s.Path] = s
	}
	for i, c := range out {
		s, ok := values[c.Op+c.Path]
		switch {
		case ok:
			out[i].Before, out[i].After = s.Before, s.After
		case c.Op == Changed:
			out[i].Before, out[i].After = redacted, redacted
		}
	}
	return out
}

func diff(out *[]Change, path string, a, b reflect.Value) {
	switch a.Kind() {
	case reflect.Pointer:
		switch {
		case a.IsNil() && b.IsNil():
		case a.IsNil():
			*out = append(*out, Change{Op: Added, Path: path})
		case b.IsNil():
			*out = append(*out, Change{Op: Removed, Path: path})
		case a.Elem().Kind() == reflect.Struct:
			diff(out, path, a.Elem(), b.Elem())
		default:
			leaf(out, path, a, b)
		}
	case reflect.Struct:
		if _, ok := a.Interface().(fmt.Stringer); ok {
			leaf(out, path, a, b)
			return
		}
		t := a.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			p := name
			if path != "" {
				p = path + "." + name
			}
			diff(out, p, a.Field(i), b.Field(i))
		}
	case reflect.Slice:
		if key := keyField(a.Type().Elem()); key != "" {
			keyed(out, path, key, a, b)
			return
		}
		leaf(out, path, a, b)
	default:
		leaf(out, path, a, b)
	}
}

// keyField is the field that names an element of a list of t, or "" when its elements have no
// name and the list is compared as a whole.
func keyField(t reflect.Type) string {
	if t.Kind() != reflect.Struct {
		return ""
	}
	for _, k := range []string{"Name", "App"} {
		if f, ok := t.FieldByName(k); ok && f.Type.Kind() == reflect.String {
			return k
		}
	}
	return ""
}

// keyed compares two lists whose elements are named by their key field: removed first, then
// each element of b in order, added or changed.
func keyed(out *[]Change, path, key string, a, b reflect.Value) {
	index := func(v reflect.Value) map[string]int {
		m := make(map[string]int, v.Len())
		for i := range v.Len() {
			m[v.Index(i).FieldByName(key).String()] = i
		}
		return m
	}
	ia, ib := index(a), index(b)
	elem := func(k string) string { return path + "[" + strings.TrimSuffix(k, ".") + "]" }
	for i := range a.Len() {
		k := a.Index(i).FieldByName(key).String()
		if _, ok := ib[k]; !ok {
			*out = append(*out, Change{Op: Removed, Path: elem(k)})
		}
	}
	for i := range b.Len() {
		k := b.Index(i).FieldByName(key).String()
		j, ok := ia[k]
		if !ok {
			*out = append(*out, Change{Op: Added, Path: elem(k)})
			continue
		}
		diff(out, elem(k), a.Index(j), b.Index(i))
	}
}

func leaf(out *[]Change, path string, a, b reflect.Value) {
	sa, sb := format(a), format(b)
	if sa != sb {
		*out = append(*out, Change{Op: Changed, Path: path, Before: sa, After: sb})
	}
}

// format writes v as it would read in YAML's flow style.
func format(v reflect.Value) string {
	if s, ok := v.Interface().(fmt.Stringer); ok {
		return s.String()
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return "(none)"
		}
		return format(v.Elem())
	case reflect.String:
		if s := v.String(); s != "" && !strings.ContainsAny(s, " :,[]{}#\"'") {
			return s
		}
		return strconv.Quote(v.String())
	case reflect.Slice:
		parts := make([]string, v.Len())
		for i := range v.Len() {
			parts[i] = format(v.Index(i))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case reflect.Map:
		keys := v.MapKeys()
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, format(k)+": "+format(v.MapIndex(k)))
		}
		slices.Sort(parts)
		return "{" + strings.Join(parts, ", ") + "}"
	case reflect.Struct:
		t := v.Type()
		parts := make([]string, 0, t.NumField())
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			switch {
			case name == "" || name == "-" || v.Field(i).IsZero():
			default:
				parts = append(parts, name+": "+format(v.Field(i)))
			}
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return fmt.Sprint(v.Interface())
}
