// Package label parses and evaluates Kubernetes-style label selectors, such
// as "app=base,role!=debug,region in (eu,us),!legacy", which pick the devices
// a listing, rollout or channel applies to.
//
// The grammar follows Kubernetes: requirements are separated by commas and
// all must hold. Each is "key", "!key", "key=value", "key==value",
// "key!=value", "key in (v1,v2)" or "key notin (v1,v2)".
package label

import (
	"fmt"
	"slices"
	"strings"

	"github.com/flotilla-ota/flotilla"
)

// Operator is the relation a requirement tests.
type Operator string

// The operators.
const (
	Exists       Operator = "exists"
	DoesNotExist Operator = "!"
	Equals       Operator = "="
	NotEquals    Operator = "!="
	In           Operator = "in"
	NotIn        Operator = "notin"
)

// Requirement is one comma-separated term of a selector.
type Requirement struct {
	Key    string
	Op     Operator
	Values []string
	// set holds long value lists for constant-time matching.
	set map[string]struct{}
}

// has reports whether v is one of the requirement's values.
func (r Requirement) has(v string) bool {
	if r.set != nil {
		_, ok := r.set[v]
		return ok
	}
	return slices.Contains(r.Values, v)
}

// MaxLength bounds a selector's text. A selector names labels; a list of
// device ids belongs in a rollout's devices field.
const MaxLength = 32 << 10

// setAbove is the value count from which matching uses a set.
const setAbove = 16

// Selector is a conjunction of requirements. The zero Selector matches
// everything.
type Selector struct {
	Reqs []Requirement
}

// Empty reports whether the selector matches everything.
func (s Selector) Empty() bool { return len(s.Reqs) == 0 }

// Matches reports whether labels satisfy every requirement.
func (s Selector) Matches(labels map[string]string) bool {
	for _, r := range s.Reqs {
		v, ok := labels[r.Key]
		switch r.Op {
		case Exists:
			if !ok {
				return false
			}
		case DoesNotExist:
			if ok {
				return false
			}
		case Equals, In:
			if !ok || !r.has(v) {
				return false
			}
		case NotEquals, NotIn:
			if ok && r.has(v) {
				return false
			}
		}
	}
	return true
}

// String renders the selector in canonical form; Parse(s.String()) yields an
// equal selector.
func (s Selector) String() string {
	parts := make([]string, len(s.Reqs))
	for i, r := range s.Reqs {
		switch r.Op {
		case Exists:
			parts[i] = r.Key
		case DoesNotExist:
			parts[i] = "!" + r.Key
		case Equals, NotEquals:
			parts[i] = r.Key + string(r.Op) + r.Values[0]
		default:
			parts[i] = r.Key + " " + string(r.Op) + " (" + strings.Join(r.Values, ",") + ")"
		}
	}
	return strings.Join(parts, ",")
}

// Everything matches all label sets.
var Everything = Selector{}

// Parse parses a selector. An empty or blank string selects everything.
// Errors are flotilla EInvalid errors that name the offending position.
func Parse(s string) (Selector, error) {
	if len(s) > MaxLength {
		return Selector{}, flotilla.Errorf(flotilla.EInvalid, "selector is %d bytes long; at most %d are allowed", len(s), MaxLength)
	}
	p := &parser{src: s}
	sel, err := p.parse()
	if err != nil {
		return Selector{}, flotilla.Errorf(flotilla.EInvalid, "selector %q: %v", s, err)
	}
	return sel, nil
}

// MustParse is Parse for selectors known to be valid; it panics otherwise.
func MustParse(s string) Selector {
	sel, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return sel
}

type parser struct {
	src string
	pos int
}

func (p *parser) skipSpace() {
	for p.pos < len(p.src) && (p.src[p.pos] == ' ' || p.src[p.pos] == '\t') {
		p.pos++
	}
}

func (p *parser) eof() bool { p.skipSpace(); return p.pos >= len(p.src) }

func isIdentChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == '/'
}

// ident reads a key or value; it may be empty.
func (p *parser) ident() string {
	p.skipSpace()
	start := p.pos
	for p.pos < len(p.src) && isIdentChar(p.src[p.pos]) {
		p.pos++
	}
	return p.src[start:p.pos]
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("at position %d: %s", p.pos+1, fmt.Sprintf(format, args...))
}

func (p *parser) parse() (Selector, error) {
	var sel Selector
	if p.eof() {
		return sel, nil
	}
	for {
		r, err := p.requirement()
		if err != nil {
			return Selector{}, err
		}
		sel.Reqs = append(sel.Reqs, r)
		if p.eof() {
			return sel, nil
		}
		if p.src[p.pos] != ',' {
			return Selector{}, p.errorf("expected ',' between requirements, found %q", p.src[p.pos:p.pos+1])
		}
		p.pos++
	}
}

func (p *parser) key() (string, error) {
	k := p.ident()
	if k == "" {
		if p.pos < len(p.src) {
			return "", p.errorf("expected a label key, found %q", p.src[p.pos:p.pos+1])
		}
		return "", p.errorf("expected a label key, found end of input")
	}
	if !flotilla.IsLabelKey(k) {
		return "", p.errorf("invalid label key %q", k)
	}
	return k, nil
}

func (p *parser) value() (string, error) {
	v := p.ident()
	if !flotilla.IsLabelValue(v) {
		return "", p.errorf("invalid label value %q", v)
	}
	return v, nil
}

func (p *parser) requirement() (Requirement, error) {
	p.skipSpace()
	if p.pos < len(p.src) && p.src[p.pos] == '!' {
		p.pos++
		k, err := p.key()
		if err != nil {
			return Requirement{}, err
		}
		return Requirement{Key: k, Op: DoesNotExist}, nil
	}
	k, err := p.key()
	if err != nil {
		return Requirement{}, err
	}
	if p.eof() || p.src[p.pos] == ',' {
		return Requirement{Key: k, Op: Exists}, nil
	}
	rest := p.src[p.pos:]
	switch {
	case strings.HasPrefix(rest, "!="):
		p.pos += 2
		v, err := p.value()
		return Requirement{Key: k, Op: NotEquals, Values: []string{v}}, err
	case strings.HasPrefix(rest, "=="):
		p.pos += 2
		v, err := p.value()
		return Requirement{Key: k, Op: Equals, Values: []string{v}}, err
	case strings.HasPrefix(rest, "="):
		p.pos++
		v, err := p.value()
		return Requirement{Key: k, Op: Equals, Values: []string{v}}, err
	}
	word := p.ident()
	var op Operator
	switch word {
	case "in":
		op = In
	case "notin":
		op = NotIn
	default:
		return Requirement{}, p.errorf("expected '=', '==', '!=', 'in' or 'notin' after key %q", k)
	}
	p.skipSpace()
	if p.pos >= len(p.src) || p.src[p.pos] != '(' {
		return Requirement{}, p.errorf("expected '(' after %q", word)
	}
	p.pos++
	var vals []string
	seen := map[string]struct{}{}
	for {
		v, err := p.value()
		if err != nil {
			return Requirement{}, err
		}
		if _, dup := seen[v]; !dup {
			seen[v] = struct{}{}
			vals = append(vals, v)
		}
		p.skipSpace()
		if p.pos >= len(p.src) {
			return Requirement{}, p.errorf("missing ')'")
		}
		c := p.src[p.pos]
		p.pos++
		if c == ')' {
			break
		}
		if c != ',' {
			return Requirement{}, p.errorf("expected ',' or ')' in value list, found %q", string(c))
		}
	}
	r := Requirement{Key: k, Op: op, Values: vals}
	if len(vals) > setAbove {
		r.set = seen
	}
	return r, nil
}
