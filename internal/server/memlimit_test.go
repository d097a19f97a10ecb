package server

import "testing"

func TestParseMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{"768MiB", 768 << 20, false}, {"2GiB", 2 << 30, false}, {"1048576", 1 << 20, false}, {"512KiB", 512 << 10, false},
		{"100B", 100, false}, {"off", 0, false}, {"0", 0, false},
		{"", 0, true}, {"1GB", 0, true}, {"-5MiB", 0, true}, {"lots", 0, true}, {"99999999999TiB", 0, true},
	} {
		got, err := ParseMemoryLimit(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("ParseMemoryLimit(%q) = %d, %v; want %d (error: %v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func FuzzParseMemoryLimit(f *testing.F) {
	for _, s := range []string{"768MiB", "off", "1TiB", "12B"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := ParseMemoryLimit(s); err == nil && n < 0 {
			t.Fatalf("ParseMemoryLimit(%q) = %d", s, n)
		}
	})
}
