package httpapi

import "testing"

func TestParseLabelList(t *testing.T) {
	got, err := parseLabelList("app=base, tier = gold")
	if err != nil || got["app"] != "base" || got["tier"] != "gold" {
		t.Fatalf("parseLabelList = %v, %v", got, err)
	}
	got, err = parseLabelList(`{"a":"b"}`)
	if err != nil || got["a"] != "b" {
		t.Fatalf("JSON labels = %v, %v", got, err)
	}
	for _, bad := range []string{"novalue", `{"a":1}`, "{"} {
		if _, err := parseLabelList(bad); err == nil {
			t.Errorf("parseLabelList(%q) succeeded", bad)
		}
	}
}

func FuzzParseLabelList(f *testing.F) {
	for _, s := range []string{"app=base,tier=gold", `{"a":"b"}`, "", "=", ",,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseLabelList(s)
		if err == nil && m == nil {
			t.Fatal("nil map without error")
		}
	})
}
