package hawkbit

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/flotilla-ota/flotilla"
)

// A Filter is a parsed FIQL/RSQL query as hawkBit's Management API takes
// it in q= and targetFilterQuery: comparisons (==, !=, =in=, =out=, =lt=,
// =le=, =gt=, =ge= and <, <=, >, >=) joined with ';' (and) and ','
// (or), with parentheses; '*' in a value of == or != is a wildcard.
type Filter struct{ root node }

// Fields resolves a field of one item to its values (several for tags);
// ok is false for an item that lacks the field.
type Fields func(field string) (values []string, ok bool)

// Match reports whether an item matches; the empty filter matches all.
func (f Filter) Match(get Fields) bool { return f.root == nil || f.root.eval(get) }

type node interface{ eval(Fields) bool }

type andNode []node
type orNode []node

func (n andNode) eval(get Fields) bool {
	for _, c := range n {
		if !c.eval(get) {
			return false
		}
	}
	return true
}

func (n orNode) eval(get Fields) bool {
	for _, c := range n {
		if c.eval(get) {
			return true
		}
	}
	return false
}

type comparison struct {
	field string
	op    string
	args  []string
}

func (c comparison) eval(get Fields) bool {
	vals, ok := get(c.field)
	switch c.op {
	case "==", "=in=":
		return ok && anyMatch(vals, c.args)
	case "!=", "=out=":
		return !ok || !anyMatch(vals, c.args)
	}
	if !ok {
		return false
	}
	for _, v := range vals {
		cmp := compare(v, c.args[0])
		switch {
		case c.op == "=lt=" && cmp < 0, c.op == "=le=" && cmp <= 0, c.op == "=gt=" && cmp > 0, c.op == "=ge=" && cmp >= 0:
			return true
		}
	}
	return false
}

// anyMatch: a value equals an argument, '*' matching any run of
// characters; case does not matter, as in hawkBit.
func anyMatch(vals, args []string) bool {
	for _, v := range vals {
		for _, a := range args {
			if strings.Contains(a, "*") {
				if ok, _ := path.Match(strings.ToLower(strings.NewReplacer("[", "\\[", "?", "\\?", "\\", "\\\\").Replace(a)), strings.ToLower(v)); ok {
					return true
				}
				continue
			}
			if strings.EqualFold(v, a) {
				return true
			}
		}
	}
	return false
}

// compare orders numbers numerically (timestamps are milliseconds) and
// anything else as versions.
func compare(a, b string) int {
	x, errA := strconv.ParseFloat(a, 64)
	y, errB := strconv.ParseFloat(b, 64)
	if errA == nil && errB == nil {
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	}
	return flotilla.CompareVersions(a, b)
}

// maxQuery bounds a query's length.
const maxQuery = 32 << 10

// ParseFilter parses q; known reports whether a field may be filtered on
// (unknown fields are an error naming the field and the known ones).
func ParseFilter(q string, known func(string) bool, names string) (Filter, error) {
	q = strings.TrimSpace(q)
	if q == "" {
		return Filter{}, nil
	}
	if len(q) > maxQuery {
		return Filter{}, flotilla.Errorf(flotilla.EInvalid, "query is longer than %d characters", maxQuery)
	}
	p := &rsqlParser{src: q, known: known, names: names}
	n, err := p.or(0)
	if err != nil {
		return Filter{}, err
	}
	p.space()
	if p.pos < len(p.src) {
		return Filter{}, p.errorf("unexpected %q", p.src[p.pos:])
	}
	return Filter{root: n}, nil
}

type rsqlParser struct {
	src   string
	pos   int
	known func(string) bool
	names string
}

func (p *rsqlParser) errorf(format string, args ...any) error {
	return flotilla.Errorf(flotilla.EInvalid, "query %q: at position %d: %s", p.src, p.pos, fmt.Sprintf(format, args...))
}

func (p *rsqlParser) space() {
	for p.pos < len(p.src) && p.src[p.pos] == ' ' {
		p.pos++
	}
}

// keyword consumes " and " / " or " spelled out.
func (p *rsqlParser) keyword(word string) bool {
	save := p.pos
	p.space()
	if strings.HasPrefix(strings.ToLower(p.src[p.pos:]), word+" ") && p.pos > 0 && p.src[p.pos-1] == ' ' {
		p.pos += len(word)
		return true
	}
	p.pos = save
	return false
}

const maxDepth = 64

func (p *rsqlParser) or(depth int) (node, error) {
	var out orNode
	for {
		n, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
		p.space()
		if p.pos < len(p.src) && p.src[p.pos] == ',' {
			p.pos++
			continue
		}
		if p.keyword("or") {
			continue
		}
		break
	}
	if len(out) == 1 {
		return out[0], nil
	}
	return out, nil
}

func (p *rsqlParser) and(depth int) (node, error) {
	var out andNode
	for {
		n, err := p.constraint(depth)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
		p.space()
		if p.pos < len(p.src) && p.src[p.pos] == ';' {
			p.pos++
			continue
		}
		if p.keyword("and") {
			continue
		}
		break
	}
	if len(out) == 1 {
		return out[0], nil
	}
	return out, nil
}

func (p *rsqlParser) constraint(depth int) (node, error) {
	if depth > maxDepth {
		return nil, p.errorf("too many nested parentheses")
	}
	p.space()
	if p.pos < len(p.src) && p.src[p.pos] == '(' {
		p.pos++
		n, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		p.space()
		if p.pos >= len(p.src) || p.src[p.pos] != ')' {
			return nil, p.errorf("missing ')'")
		}
		p.pos++
		return n, nil
	}
	start := p.pos
	for p.pos < len(p.src) && isSelectorChar(p.src[p.pos]) {
		p.pos++
	}
	field := strings.ToLower(p.src[start:p.pos])
	if field == "" {
		return nil, p.errorf("expected a field name")
	}
	if !p.known(field) {
		return nil, flotilla.Errorf(flotilla.EInvalid, "query %q: field %q is not supported; filter on %s", p.src, p.src[start:p.pos], p.names)
	}
	p.space()
	op := ""
	for _, candidate := range []string{"==", "!=", "=in=", "=out=", "=lt=", "=le=", "=gt=", "=ge=", "<=", ">=", "<", ">"} {
		if strings.HasPrefix(strings.ToLower(p.src[p.pos:]), candidate) {
			op = candidate
			break
		}
	}
	if op == "" {
		return nil, p.errorf("expected an operator (==, !=, =in=, =out=, =lt=, =le=, =gt=, =ge=) after %q", field)
	}
	p.pos += len(op)
	if fiql, ok := map[string]string{"<": "=lt=", "<=": "=le=", ">": "=gt=", ">=": "=ge="}[op]; ok {
		op = fiql
	}
	p.space()
	var args []string
	if p.pos < len(p.src) && p.src[p.pos] == '(' {
		p.pos++
		for {
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			args = append(args, v)
			p.space()
			if p.pos < len(p.src) && p.src[p.pos] == ',' {
				p.pos++
				continue
			}
			if p.pos < len(p.src) && p.src[p.pos] == ')' {
				p.pos++
				break
			}
			return nil, p.errorf("expected ',' or ')' in the list of values")
		}
	} else {
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		args = []string{v}
	}
	if len(args) > 1 && op != "=in=" && op != "=out=" {
		return nil, p.errorf("a list of values needs =in= or =out=")
	}
	return comparison{field: field, op: op, args: args}, nil
}

func isSelectorChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

func (p *rsqlParser) value() (string, error) {
	p.space()
	if p.pos >= len(p.src) {
		return "", p.errorf("expected a value")
	}
	if q := p.src[p.pos]; q == '"' || q == '\'' {
		var b strings.Builder
		p.pos++
		for p.pos < len(p.src) {
			c := p.src[p.pos]
			p.pos++
			switch {
			case c == '\\' && p.pos < len(p.src):
				b.WriteByte(p.src[p.pos])
				p.pos++
			case c == q:
				return b.String(), nil
			default:
				b.WriteByte(c)
			}
		}
		return "", p.errorf("unterminated quoted value")
	}
	start := p.pos
	for p.pos < len(p.src) && !strings.ContainsRune(`;,()"' `, rune(p.src[p.pos])) {
		p.pos++
	}
	if p.pos == start {
		return "", p.errorf("expected a value")
	}
	return p.src[start:p.pos], nil
}
