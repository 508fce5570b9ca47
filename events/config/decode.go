package config

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A problem found while decoding: its path, its line and what is wrong, in YAML's words.
type located struct {
	path string
	line int
	text string
}

// decodeProblems walks the YAML tree of doc alongside the type of Config and reports every key
// that is not a field, every value of the wrong kind and every YAML syntax error, each with its
// path and line; fatal is set when the document cannot be decoded at all. It also returns the
// line of every path, so that later problems can be placed too. A second YAML document is a
// problem, unless ignoreRest (see ParseStored).
func decodeProblems(doc []byte, ignoreRest bool) (root *yaml.Node, found []located, fatal bool, lines map[string]int) {
	lines = map[string]int{}
	root = &yaml.Node{}
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	if err := dec.Decode(root); err != nil && err != io.EOF {
		return nil, []located{syntaxProblem(err)}, true, lines
	}
	if len(root.Content) == 0 {
		return nil, []located{{text: "document is empty"}}, true, lines
	}
	// A second document would be ignored, and shown as written by Redact, secrets and all.
	var next yaml.Node
	if !ignoreRest {
		switch err := dec.Decode(&next); {
		case err == io.EOF:
		case err != nil:
			return nil, []located{syntaxProblem(err)}, true, lines
		case len(next.Content) > 0 && !isNull(next.Content[0]):
			return nil, []located{{line: next.Line, text: fmt.Sprintf("a configuration is one YAML document: another begins on line %d", next.Line)}}, true, lines
		}
	}
	indexLines(root.Content[0], "", lines)
	var w walker
	w.walk(root.Content[0], reflect.TypeFor[Config](), "")
	return root, w.problems, false, lines
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): `)

// syntaxProblem turns a YAML syntax error into a problem with its line.
func syntaxProblem(err error) located {
	msg := err.Error()
	p := located{text: strings.TrimPrefix(msg, "yaml: ")}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		p.line, _ = strconv.Atoi(m[1])
		p.text = "invalid YAML: " + msg[len(m[0]):]
	}
	if strings.Contains(p.text, "found character that cannot start any token") {
		p.text += " (YAML indents with spaces, never tabs)"
	}
	return p
}

type walker struct {
	problems []located
	// anchored holds the anchored nodes walked already, with the type each was walked as: a
	// node is walked once per type however many aliases repeat it, so a document of aliases of
	// aliases costs its own size, not the size it stands for.
	anchored map[anchoredWalk]bool
}

type anchoredWalk struct {
	n *yaml.Node
	t reflect.Type
}

func (w *walker) add(path string, line int, format string, args ...any) {
	w.problems = append(w.problems, located{path: path, line: line, text: fmt.Sprintf(format, args...)})
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Anchor != "" {
		k := anchoredWalk{n, t}
		if w.anchored[k] {
			return
		}
		if w.anchored == nil {
			w.anchored = map[anchoredWalk]bool{}
		}
		w.anchored[k] = true
	}
	if isNull(n) {
		return
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			msg := err.Error()
			if m := yamlLine.FindStringSubmatch(msg); m != nil {
				msg = msg[len(m[0]):]
			}
			w.add(path, n.Line, "%s", msg)
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		w.walk(n, t.Elem(), path)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.add(path, n.Line, "want a mapping of %s, got %s", fieldList(t), describe(n))
			return
		}
		fields := yamlFields(t)
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			name := mapKey(k)
			f, ok := fields[name]
			if !ok {
				hint := ""
				if s := closest(name, fields); s != "" {
					hint = fmt.Sprintf(" (did you mean %q?)", s)
				}
				w.add(path, k.Line, "unknown field %q%s", name, hint)
				continue
			}
			if first, dup := seen[name]; dup {
				w.add(join(path, name), k.Line, "set twice (first on line %d)", first)
				continue
			}
			seen[name] = k.Line
			w.walk(v, f.Type, join(path, name))
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.add(path, n.Line, "want a list, got %s", describe(n))
			return
		}
		for i, e := range n.Content {
			w.walk(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.add(path, n.Line, "want a mapping, got %s", describe(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			w.walk(n.Content[i+1], t.Elem(), join(path, mapKey(n.Content[i])))
		}
	default:
		if n.Kind != yaml.ScalarNode || n.Decode(reflect.New(t).Interface()) != nil {
			w.add(path, n.Line, "want %s, got %s", kindOf(t), describe(n))
		}
	}
}

// mapKey is the name a mapping's key k gives its value, as the decoder reads it: a key written
// as an alias is the scalar it stands for, not its anchor's name.
func mapKey(k *yaml.Node) string {
	if k.Kind == yaml.AliasNode && k.Alias != nil {
		return k.Alias.Value
	}
	return k.Value
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlFields maps the YAML keys of struct t to its fields.
func yamlFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f
	}
	return out
}

func fieldList(t reflect.Type) string {
	var names []string
	for name := range yamlFields(t) {
		names = append(names, name)
	}
	sort.Strings(names)
	if len(names) > 4 {
		return "fields such as " + strings.Join(names[:3], ", ")
	}
	return strings.Join(names, ", ")
}

// describe names what a node holds, as a YAML user would say it.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

// kindOf says what a Go type holds, in YAML's words.
func kindOf(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		max := uint64(math.MaxUint64) >> (64 - t.Bits())
		return fmt.Sprintf("a whole number in 0-%d", max)
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a " + t.Kind().String()
}

// closest is the field name key was most likely meant to be, or "".
func closest(key string, fields map[string]reflect.StructField) string {
	norm := func(s string) string { return strings.ReplaceAll(strings.ToLower(s), "_", "") }
	best, bestD := "", 3
	for name := range fields {
		if norm(name) == norm(key) {
			return name
		}
		d := distance(key, name)
		if d < bestD || (d == bestD && name < best) {
			best, bestD = name, d
		}
	}
	if bestD > len(key)/2 {
		return ""
	}
	return best
}

// distance is the Damerau–Levenshtein distance (with adjacent transpositions) of a and b.
func distance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// lineOf finds the line of a problem "path: text" from the lines of the paths: the path's own,
// else its closest ancestor's.
func lineOf(problem string, lines map[string]int) int {
	path, _, ok := strings.Cut(problem, ": ")
	if !ok {
		return 0
	}
	for path != "" {
		if l, ok := lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// under reports whether path lies inside scope (scope "" holds every path).
func under(path, scope string) bool {
	return scope == "" || path == scope || strings.HasPrefix(path, scope+".") || strings.HasPrefix(path, scope+"[")
}

// Locate returns an *Error of the problems ("path: text") found in the YAML document doc, each
// with the line of its path.
func Locate(name string, doc []byte, problems []string) *Error {
	var root yaml.Node
	lines := map[string]int{}
	if yaml.Unmarshal(doc, &root) == nil && len(root.Content) > 0 {
		indexLines(root.Content[0], "", lines)
	}
	e := &Error{File: name, Problems: problems}
	for _, p := range problems {
		e.Lines = append(e.Lines, lineOf(p, lines))
	}
	return e
}

// indexLines records the line of every path of a YAML tree, whatever its type.
func indexLines(n *yaml.Node, path string, lines map[string]int) {
	if _, ok := lines[path]; !ok {
		lines[path] = n.Line
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := join(path, mapKey(n.Content[i]))
			lines[p] = n.Content[i].Line
			indexLines(n.Content[i+1], p, lines)
		}
	case yaml.SequenceNode:
		for i, e := range n.Content {
			indexLines(e, fmt.Sprintf("%s[%d]", path, i), lines)
		}
	}
}

// String writes the problem as Error.Problems holds it: "path: text", or the text alone at the
// top of the document.
func (p located) String() string {
	if p.path == "" {
		return p.text
	}
	return p.path + ": " + p.text
}
