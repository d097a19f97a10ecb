package label_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/label"
)

func TestParseAndMatch(t *testing.T) {
	labels := map[string]string{"app": "base", "role": "kiosk", "region": "eu"}
	tests := []struct {
		sel   string
		match bool
	}{
		{"", true},
		{"app=base", true},
		{"app==base", true},
		{"app=other", false},
		{"role!=debug", true},
		{"role!=kiosk", false},
		{"missing!=x", true},
		{"region in (eu,us)", true},
		{"region in (us)", false},
		{"region notin (us, ap)", true},
		{"region notin (eu)", false},
		{"app", true},
		{"legacy", false},
		{"!legacy", true},
		{"!app", false},
		{"app=base,role!=debug,region in (eu,us),!legacy", true},
		{" app = base , region in ( eu ) ", true},
		{"app=", false},
		{"example.com/tier=gold", false},
	}
	for _, tt := range tests {
		s, err := label.Parse(tt.sel)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.sel, err)
			continue
		}
		if got := s.Matches(labels); got != tt.match {
			t.Errorf("Parse(%q).Matches = %v, want %v", tt.sel, got, tt.match)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, s := range []string{
		"app=base,", ",", "app in eu", "app in (eu", "app in (eu;us)", "=x", "app=ba se",
		"app >= 3", "!", "app=-bad", "app notin ()x", "a b",
	} {
		if _, err := label.Parse(s); err == nil {
			t.Errorf("Parse(%q) succeeded, want error", s)
		}
	}
}

func TestStringRoundTrip(t *testing.T) {
	s := label.MustParse("app==base, role!=debug,region in (eu,us),!legacy,tier")
	if got, want := s.String(), "app=base,role!=debug,region in (eu,us),!legacy,tier"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	again := label.MustParse(s.String())
	if !reflect.DeepEqual(s, again) {
		t.Fatalf("round trip changed selector: %#v != %#v", s, again)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"app=base,role!=debug,region in (eu,us),!legacy", "a", "!b", "x notin (1,2)", "a==b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := label.Parse(s)
		if err != nil {
			return
		}
		again, err := label.Parse(sel.String())
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", sel.String(), s, err)
		}
		if sel.String() != again.String() {
			t.Fatalf("round trip of %q: %q != %q", s, sel.String(), again.String())
		}
		sel.Matches(map[string]string{"app": "base"})
	})
}

// TestLongSelectors: a selector is bounded (a longer one is refused before
// it is read) and a long value list is parsed and matched without
// quadratic work.
func TestLongSelectors(t *testing.T) {
	huge := "region in (" + strings.Repeat("eu,", 500_000) + "us)"
	_, err := label.Parse(huge)
	if !flotilla.IsCode(err, flotilla.EInvalid) || !strings.Contains(err.Error(), "at most") || len(err.Error()) > 200 {
		t.Fatalf("Parse of a %d-byte selector = %v", len(huge), err)
	}
	vals := make([]string, 0, 4000)
	for i := range 4000 {
		vals = append(vals, fmt.Sprintf("v%d", i))
	}
	sel, err := label.Parse("k in (" + strings.Join(vals, ",") + ",v1,v2)")
	if err != nil {
		t.Fatal(err)
	}
	if len(sel.Reqs[0].Values) != 4000 {
		t.Fatalf("%d values after removing duplicates, want 4000", len(sel.Reqs[0].Values))
	}
	if !sel.Matches(map[string]string{"k": "v3999"}) || sel.Matches(map[string]string{"k": "v4000"}) {
		t.Fatal("long value list matches wrongly")
	}
	not := label.MustParse("k notin (" + strings.Join(vals, ",") + ")")
	if not.Matches(map[string]string{"k": "v17"}) || !not.Matches(map[string]string{"k": "x"}) {
		t.Fatal("long notin list matches wrongly")
	}
}

func BenchmarkParseLongInList(b *testing.B) {
	vals := make([]string, 0, 4000)
	for i := range 4000 {
		vals = append(vals, fmt.Sprintf("v%d", i))
	}
	s := "k in (" + strings.Join(vals, ",") + ")"
	for b.Loop() {
		label.Parse(s)
	}
}
