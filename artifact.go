package flotilla

import (
	"cmp"
	"strconv"
	"strings"
	"time"
)

// Artifact types with special handling; any other lower-case string is
// allowed too.
const (
	ArtifactBinary   = "binary"
	ArtifactSWU      = "swu"
	ArtifactOCIImage = "oci-image"
)

// Artifact is a release: an immutable, versioned thing devices install. The
// common case is one file — the fields Filename to MD5, its bytes in the
// blob store under SHA256 — which is a release of one module holding that
// file. A release made of several software modules (hawkBit's
// distribution set) lists them in Modules, in install order, and has no
// file of its own (Size 0).
type Artifact struct {
	ID          int64 // also the DDI software module id
	Tenant      string
	Name        string
	Version     string
	Filename    string
	Type        string
	Labels      map[string]string
	Description string
	Size        int64
	SHA256      string
	SHA1        string
	MD5         string
	CreatedAt   time.Time
	// Modules are the release's software modules with their files, when
	// read with them (store.Artifacts.ReleaseModules).
	Modules []Module
}

// MultiModule reports whether the release is made of modules rather than
// one file of its own.
func (a Artifact) MultiModule() bool { return a.Size == 0 && a.SHA256 == "" }

// Module is a software module: one part of a release — an OS image, an
// application, a bootloader — with its files (hawkBit's software module).
type Module struct {
	ID          int64 // the DDI software module id
	Tenant      string
	Name        string
	Version     string
	Type        string // os, application, firmware, ...
	Vendor      string
	Description string
	Files       []File
	CreatedAt   time.Time
}

// ModuleFilter narrows a module listing; empty fields match all.
type ModuleFilter struct {
	Name, Version, Type string
}

// File is one file of a module; its bytes are in the blob store under
// SHA256.
type File struct {
	ID        int64
	ModuleID  int64
	Filename  string
	Size      int64
	SHA256    string
	SHA1      string
	MD5       string
	CreatedAt time.Time
}

// Module types with a meaning for DDI chunks ("part"); any other lower-case
// name is allowed too.
const (
	ModuleOS          = "os"
	ModuleApplication = "application"
	ModuleFirmware    = "firmware"
)

// DefaultModuleType is the module type of a single-file release: an
// application for OCI images, the OS otherwise.
func DefaultModuleType(artifactType string) string {
	if artifactType == ArtifactOCIImage {
		return ModuleApplication
	}
	return ModuleOS
}

// TargetPath is where a release is in a tenant's TUF repository:
// NAME/VERSION/FILENAME, with the file name devices are given.
func (a Artifact) TargetPath() string {
	f := a.Filename
	if f == "" {
		f = DefaultFilename(a.Name, a.Version)
	}
	return a.Name + "/" + a.Version + "/" + f
}

// DefaultFilename is the file name devices see when none was given.
func DefaultFilename(name, version string) string { return name + "-" + version }

// CompareVersions orders versions by semantic versioning (2.0.0, with or
// without a leading "v") where both parse, otherwise by string; semantic
// versions sort before other strings.
func CompareVersions(a, b string) int {
	sa, aok := parseSemver(a)
	sb, bok := parseSemver(b)
	switch {
	case aok && bok:
		if c := sa.compare(sb); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	case aok:
		return -1
	case bok:
		return 1
	}
	return cmp.Compare(a, b)
}

type semver struct {
	nums [3]uint64
	pre  []string
}

func parseSemver(v string) (semver, bool) {
	var s semver
	v = strings.TrimPrefix(v, "v")
	if i := strings.IndexByte(v, '+'); i >= 0 {
		v = v[:i]
	}
	core := v
	if i := strings.IndexByte(v, '-'); i >= 0 {
		core = v[:i]
		s.pre = strings.Split(v[i+1:], ".")
		for _, p := range s.pre {
			if p == "" {
				return s, false
			}
		}
	}
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return s, false
	}
	for i, p := range parts {
		if p == "" || (len(p) > 1 && p[0] == '0') {
			return s, false
		}
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return s, false
		}
		s.nums[i] = n
	}
	return s, true
}

func (a semver) compare(b semver) int {
	for i := range a.nums {
		if c := cmp.Compare(a.nums[i], b.nums[i]); c != 0 {
			return c
		}
	}
	// A version without a pre-release sorts after one with.
	switch {
	case len(a.pre) == 0 && len(b.pre) == 0:
		return 0
	case len(a.pre) == 0:
		return 1
	case len(b.pre) == 0:
		return -1
	}
	for i := 0; i < len(a.pre) && i < len(b.pre); i++ {
		x, xerr := strconv.ParseUint(a.pre[i], 10, 64)
		y, yerr := strconv.ParseUint(b.pre[i], 10, 64)
		var c int
		switch {
		case xerr == nil && yerr == nil:
			c = cmp.Compare(x, y)
		case xerr == nil:
			c = -1
		case yerr == nil:
			c = 1
		default:
			c = cmp.Compare(a.pre[i], b.pre[i])
		}
		if c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a.pre), len(b.pre))
}

// ArtifactPatch changes the mutable fields of an artifact; nil leaves a
// field alone.
type ArtifactPatch struct {
	Labels      *map[string]string
	Description *string
}
