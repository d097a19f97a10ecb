// Package buildinfo tells which Flotilla a binary is: the module version it
// was built as, or the commit of a source build, so that operators can say
// what they run and clients what they talk to.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Version is the release version ("v1.2.0"), or for a build from source
// "devel" with the commit ("devel+3f2a1b9c0d1e", "+dirty" when the tree had
// uncommitted changes).
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	v := "devel"
	if rev != "" {
		v += "+" + rev[:min(12, len(rev))]
	}
	if dirty {
		v += "+dirty"
	}
	return v
}

// String is the line `flotilla version` prints.
func String() string {
	return strings.Join([]string{"flotilla", Version(), runtime.Version(), runtime.GOOS + "/" + runtime.GOARCH}, " ")
}
