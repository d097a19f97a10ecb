package server

import (
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultMemoryLimit is the Go heap's soft limit when neither
// --memory-limit nor GOMEMLIMIT says otherwise: with SQLite's page caches
// (outside the Go heap, 128 MiB) the server stays under 1 GiB while its
// caches fill up, instead of letting the heap grow to twice what it holds.
const DefaultMemoryLimit = "768MiB"

// ParseMemoryLimit reads a size in GOMEMLIMIT's syntax (a number of bytes
// with an optional B, KiB, MiB, GiB or TiB suffix), or "off" for none (0).
func ParseMemoryLimit(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "off" || s == "0" {
		return 0, nil
	}
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("memory limit %q: want a size such as 768MiB or 2GiB, or off", s)
	}
	return n * mult, nil
}

// ApplyMemoryLimit sets the Go heap's soft limit from limit (see
// ParseMemoryLimit); a GOMEMLIMIT in the environment wins, as the runtime
// already applied it.
func ApplyMemoryLimit(limit string, getenv func(string) string) error {
	if getenv("GOMEMLIMIT") != "" {
		return nil
	}
	n, err := ParseMemoryLimit(limit)
	if err != nil {
		return err
	}
	if n > 0 {
		debug.SetMemoryLimit(n)
	}
	return nil
}
