package config

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Redacted stands for a secret written inline in a document shown to an operator (Redact). A
// document that holds it where a secret belongs is refused: applied, the marker would be the
// secret.
const Redacted = "<redacted>"

// Redact returns doc with every secret written inline (the fields InlineSecrets lists) replaced
// by "<redacted>", and the paths of those secrets: a secret field's whole value, the secret part
// of a URL or a check's path (see secretFields). The rest of the text is left as it was,
// comments included, unless a secret is written in a form replaced only by writing the document
// again (a block scalar, a tag, an anchor). A document without inline secrets, or that is not
// YAML, comes back as it is. Of a second YAML document after the first (which a version applied
// before Parse refused one may hold, and which the roles ignored), nothing is shown but a comment
// saying where it began, and the paths end with "document 2 (from line N)": whatever it holds,
// a secret too, the document's digest covers text not shown.
func Redact(doc []byte) ([]byte, []string) {
	doc, more := firstDocument(doc)
	out, fields := redactOne(doc)
	if more > 0 {
		out = append(slices.Clip(out), fmt.Sprintf("# not shown: a second YAML document, from line %d, which roles ignored (--show-secrets shows it)\n", more)...)
		fields = append(fields, fmt.Sprintf("%s (from line %d)", SecondDocument, more))
	}
	return out, fields
}

// SecondDocument begins the path Redact lists for a second YAML document, which it leaves out
// whole rather than showing "<redacted>" in its place.
const SecondDocument = "document 2"

// firstDocument returns the text of doc's first YAML document and the line where a second one
// with content begins (0: none; nor when doc is not YAML). A second one that is not YAML begins
// at the first document marker after the first's content.
func firstDocument(doc []byte) ([]byte, int) {
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	var first, next yaml.Node
	if dec.Decode(&first) != nil || len(first.Content) == 0 {
		return doc, 0
	}
	line := 0
	switch err := dec.Decode(&next); {
	case err == io.EOF:
	case err != nil:
		line = nextMarker(doc, first.Content[0].Line)
	case len(next.Content) > 0 && !isNull(next.Content[0]):
		line = next.Line
	}
	at, ok := offset(doc, line, 1)
	if line == 0 || !ok {
		return doc, 0
	}
	return doc[:at], line
}

// nextMarker returns the first line after line that starts with a document marker, --- or ...
// (0: none).
func nextMarker(doc []byte, line int) int {
	for n, l := range bytes.SplitAfter(doc, []byte("\n")) {
		if n+1 <= line {
			continue
		}
		l = bytes.TrimRight(l, "\r\n")
		for _, m := range [][]byte{[]byte("---"), []byte("...")} {
			if bytes.HasPrefix(l, m) && (len(l) == len(m) || l[len(m)] == ' ' || l[len(m)] == '\t') {
				return n + 1
			}
		}
	}
	return 0
}

// redactOne is Redact for a document of one YAML document.
func redactOne(doc []byte) ([]byte, []string) {
	var root yaml.Node
	if yaml.Unmarshal(doc, &root) != nil {
		return doc, nil
	}
	all := inlineSecretNodes(&root)
	if len(all) == 0 {
		return doc, nil
	}
	fields := make([]string, len(all))
	for i, s := range all {
		fields[i] = s.path
	}
	found := distinct(all)
	if out, ok := spliceRedacted(doc, found); ok {
		return out, fields
	}
	for _, s := range found {
		s.node.Value, s.node.Style, s.node.Tag = s.redacted, yaml.DoubleQuotedStyle, "!!str"
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&root); err != nil {
		// A tree just decoded always encodes; were it not to, nothing of it is shown.
		return []byte("# not shown: its inline secrets could not be redacted: " + err.Error() + "\n"), fields
	}
	return buf.Bytes(), fields
}

// inlineSecret is a secret found in a decoded document: its path, as InlineSecrets names it, its
// field, the scalar holding it and what Redact writes in its place.
type inlineSecret struct {
	path     string
	field    *secretField
	node     *yaml.Node
	redacted string
}

// inlineSecretNodes finds the inline secrets of a decoded document, in the order of
// secretFields: one for each path, so a scalar shared by aliases is found under each.
func inlineSecretNodes(root *yaml.Node) []inlineSecret {
	var found []inlineSecret
	top := resolve(root)
	if top != nil && top.Kind == yaml.DocumentNode && len(top.Content) > 0 {
		top = resolve(top.Content[0])
	}
	for i := range secretFields {
		f := &secretFields[i]
		walkField(top, "", strings.Split(f.path, "."), func(path, key string, n *yaml.Node) {
			if n == nil || n.Kind != yaml.ScalarNode || n.Value == "" || isNull(n) {
				return
			}
			shown, secret := f.redact(key, n.Value)
			if strings.Contains(n.Value, Redacted) {
				// Redacted already, or written where a secret may be: refused (Validate).
				shown, secret = n.Value, true
			}
			if secret {
				found = append(found, inlineSecret{path, f, n, shown})
			}
		})
	}
	return found
}

// distinct returns found without the secrets of a scalar found before under another path.
func distinct(found []inlineSecret) []inlineSecret {
	var out []inlineSecret
	for _, s := range found {
		if !slices.ContainsFunc(out, func(o inlineSecret) bool { return o.node == s.node }) {
			out = append(out, s)
		}
	}
	return out
}

// walkField calls at with the path, the last key and the value of every member of n that steps
// name (secretFields' syntax), in the order a Config is written: the elements of a list in
// turn, the keys of a map sorted.
func walkField(n *yaml.Node, path string, steps []string, at func(path, key string, v *yaml.Node)) {
	if len(steps) == 0 || n == nil {
		return
	}
	step, rest := steps[0], steps[1:]
	var visit func(path, key string, v *yaml.Node)
	visit = func(path, key string, v *yaml.Node) {
		if len(rest) == 0 {
			at(path, key, v)
		} else {
			walkField(v, path, rest, at)
		}
	}
	if step == "*" {
		for _, k := range keys(n) {
			visit(join(path, k), k, member(n, k))
		}
		return
	}
	name, list := strings.CutSuffix(step, "[]")
	v := member(n, name)
	if !list {
		visit(join(path, name), name, v)
		return
	}
	for i, e := range items(v) {
		visit(fmt.Sprintf("%s[%d]", join(path, name), i), name, e)
	}
}

// keys returns the keys of the mapping n, sorted, each once; a key written as an alias is the
// scalar it stands for, as the decoder reads it (and member looks it up).
func keys(n *yaml.Node) []string {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	var out []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := mapKey(n.Content[i]); !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// resolve returns the node an alias stands for, or n.
func resolve(n *yaml.Node) *yaml.Node {
	if n != nil && n.Kind == yaml.AliasNode {
		return n.Alias
	}
	return n
}

// member returns the value of key in the mapping n (the last, should it be set twice), or nil. A
// key written as an alias is the scalar it stands for, as the decoder reads it.
func member(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	var v *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if mapKey(n.Content[i]) == key {
			v = resolve(n.Content[i+1])
		}
	}
	return v
}

// items returns the elements of the sequence n, or none, numbered as the decoder numbers them in
// a list of structs: without the null ones, which it drops.
func items(n *yaml.Node) []*yaml.Node {
	if n == nil || n.Kind != yaml.SequenceNode {
		return nil
	}
	var out []*yaml.Node
	for _, e := range n.Content {
		if e = resolve(e); e != nil && !isNull(e) {
			out = append(out, e)
		}
	}
	return out
}

// spliceRedacted replaces, in the text of doc, the scalar of each secret found with its
// redacted value, double-quoted, and reports whether it could: each a plain or quoted scalar
// where the parser says it starts, and the result the same document with the redacted values in
// their places.
func spliceRedacted(doc []byte, found []inlineSecret) ([]byte, bool) {
	type span struct {
		from, to int
		with     string
	}
	spans := make([]span, 0, len(found))
	for _, s := range found {
		from, ok := offset(doc, s.node.Line, s.node.Column)
		if !ok || s.node.Anchor != "" {
			return nil, false
		}
		to, ok := scalarEnd(doc, from, s.node)
		if !ok {
			return nil, false
		}
		spans = append(spans, span{from, to, strconv.Quote(s.redacted)})
	}
	slices.SortFunc(spans, func(a, b span) int { return a.from - b.from })
	var out []byte
	last := 0
	for _, s := range spans {
		if s.from < last {
			return nil, false
		}
		out = append(append(out, doc[last:s.from]...), s.with...)
		last = s.to
	}
	out = append(out, doc[last:]...)
	var root yaml.Node
	if yaml.Unmarshal(out, &root) != nil {
		return nil, false
	}
	again := distinct(inlineSecretNodes(&root))
	if len(again) != len(found) {
		return nil, false
	}
	for i, s := range again {
		if s.path != found[i].path || s.node.Value != found[i].redacted {
			return nil, false
		}
	}
	return out, true
}

// offset returns the byte offset of line and column (both from 1, the column in characters) in
// doc.
func offset(doc []byte, line, column int) (int, bool) {
	at := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(doc[at:], '\n')
		if i < 0 {
			return 0, false
		}
		at += i + 1
	}
	for c := 1; c < column; c++ {
		if at >= len(doc) || doc[at] == '\n' {
			return 0, false
		}
		_, size := utf8.DecodeRune(doc[at:])
		at += size
	}
	return at, true
}

// scalarEnd returns the offset just past the scalar n that starts at from in doc: a plain
// scalar on one line, or a quoted one.
func scalarEnd(doc []byte, from int, n *yaml.Node) (int, bool) {
	switch n.Style {
	case 0:
		if bytes.HasPrefix(doc[from:], []byte(n.Value)) && !bytes.ContainsAny([]byte(n.Value), "\r\n") {
			return from + len(n.Value), true
		}
	case yaml.DoubleQuotedStyle:
		if from < len(doc) && doc[from] == '"' {
			for i := from + 1; i < len(doc); i++ {
				switch doc[i] {
				case '\\':
					i++
				case '"':
					return i + 1, true
				}
			}
		}
	case yaml.SingleQuotedStyle:
		if from < len(doc) && doc[from] == '\'' {
			for i := from + 1; i < len(doc); i++ {
				if doc[i] == '\'' {
					if i+1 < len(doc) && doc[i+1] == '\'' {
						i++
						continue
					}
					return i + 1, true
				}
			}
		}
	}
	return 0, false
}
