package flotilla

import (
	"regexp"
	"strings"
)

var (
	tenantNameRE  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	artifactRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	versionRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}$`)
	deviceIDRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$`)
	filenameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+~-]{0,254}$`)
	simpleNameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	labelKeyRE    = regexp.MustCompile(`^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$`)
	labelValueRE  = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$`)
	dotsOnlyRE    = regexp.MustCompile(`^\.+$`)
	artifactTypes = regexp.MustCompile(`^[a-z0-9][a-z0-9._/+-]{0,63}$`)
)

// ValidateTenantName checks a tenant name: lower-case letters, digits and
// dashes, at most 63 characters, as in a DNS label.
func ValidateTenantName(s string) error {
	if !tenantNameRE.MatchString(s) {
		return Errorf(EInvalid, "tenant name %q is invalid: use 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit", s)
	}
	return nil
}

// ValidateArtifactName checks an artifact name; names are path segments, so
// slashes and dot-only names are refused.
func ValidateArtifactName(s string) error {
	if !artifactRE.MatchString(s) || dotsOnlyRE.MatchString(s) || strings.Contains(s, "..") {
		return Errorf(EInvalid, "artifact name %q is invalid: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit, without '..'", s)
	}
	return nil
}

// ValidateVersion checks an artifact version string.
func ValidateVersion(s string) error {
	if !versionRE.MatchString(s) || strings.Contains(s, "..") {
		return Errorf(EInvalid, "version %q is invalid: use 1-64 letters, digits, '.', '_', '+', '~' or '-', starting with a letter or digit, without '..'", s)
	}
	return nil
}

// ValidateFilename checks the file name a device sees for an artifact.
func ValidateFilename(s string) error {
	if !filenameRE.MatchString(s) || strings.Contains(s, "..") {
		return Errorf(EInvalid, "filename %q is invalid: use 1-255 letters, digits, '.', '_', '+', '~' or '-', starting with a letter or digit, without '..'", s)
	}
	return nil
}

// ValidateArtifactType checks an artifact type such as "binary" or "oci-image".
func ValidateArtifactType(s string) error {
	if !artifactTypes.MatchString(s) {
		return Errorf(EInvalid, "artifact type %q is invalid: use 1-64 lower-case letters, digits or '._/+-'", s)
	}
	return nil
}

// ValidateDeviceID checks a device (controller) id.
func ValidateDeviceID(s string) error {
	if !deviceIDRE.MatchString(s) {
		return Errorf(EInvalid, "device id %q is invalid: use 1-128 letters, digits or '._:@-', starting with a letter or digit", s)
	}
	return nil
}

// ValidateName checks the name of a policy, channel or rollout wave.
func ValidateName(kind, s string) error {
	if !simpleNameRE.MatchString(s) {
		return Errorf(EInvalid, "%s name %q is invalid: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", kind, s)
	}
	return nil
}

// ValidateLabels checks label keys and values with Kubernetes' rules.
func ValidateLabels(labels map[string]string) error {
	for k, v := range labels {
		if !labelKeyRE.MatchString(k) {
			return Errorf(EInvalid, "label key %q is invalid: use an optional DNS prefix and '/', then 1-63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit", k)
		}
		if !labelValueRE.MatchString(v) {
			return Errorf(EInvalid, "label %q has invalid value %q: use at most 63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit", k, v)
		}
	}
	return nil
}

// IsLabelKey reports whether s is a valid label key.
func IsLabelKey(s string) bool { return labelKeyRE.MatchString(s) }

// IsLabelValue reports whether s is a valid label value.
func IsLabelValue(s string) bool { return labelValueRE.MatchString(s) }

// ValidateModuleName checks a software module's name: 1-128 printable
// characters (hawkBit allows spaces, e.g. "app runtime").
func ValidateModuleName(s string) error {
	if s == "" || len(s) > 128 || strings.TrimSpace(s) != s || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return Errorf(EInvalid, "module name %q is invalid: use 1-128 printable characters without leading or trailing spaces", s)
	}
	return nil
}
