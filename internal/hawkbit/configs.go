package hawkbit

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/core"
)

func (s *Server) configRoutes() {
	s.handle("GET "+Prefix+"/system/configs", s.listConfigs)
	s.handle("GET "+Prefix+"/system/configs/{key}", s.getConfig)
	s.handle("PUT "+Prefix+"/system/configs/{key}", s.putConfig)
	s.handle("DELETE "+Prefix+"/system/configs/{key}", s.deleteConfig)
}

// configKey is one of hawkBit's tenant configuration keys, mapped onto
// Flotilla's tenant settings.
type configKey struct {
	get func(t flotilla.Tenant, srv *Server) any // the value in effect
	set func(t *flotilla.Tenant, v json.RawMessage) error
	// isSet reports whether the tenant has its own value (else "global").
	isSet func(t flotilla.Tenant) bool
}

func durationKey(field func(*flotilla.TenantSettings) *flotilla.Duration, def func(*Server) time.Duration) configKey {
	return configKey{
		get: func(t flotilla.Tenant, srv *Server) any {
			d := time.Duration(*field(&t.Settings))
			if d == 0 {
				d = def(srv)
			}
			return hms(d)
		},
		set: func(t *flotilla.Tenant, v json.RawMessage) error {
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return flotilla.Errorf(flotilla.EInvalid, "value must be a duration string HH:mm:ss")
			}
			d, err := parseHMS(s)
			if err != nil {
				return err
			}
			*field(&t.Settings) = flotilla.Duration(d)
			return nil
		},
		isSet: func(t flotilla.Tenant) bool { return *field(&t.Settings) != 0 },
	}
}

func boolKey(field func(*flotilla.Tenant) *bool, inverted bool) configKey {
	return configKey{
		get: func(t flotilla.Tenant, _ *Server) any { return *field(&t) != inverted },
		set: func(t *flotilla.Tenant, v json.RawMessage) error {
			var b bool
			if err := json.Unmarshal(v, &b); err != nil {
				return flotilla.Errorf(flotilla.EInvalid, "value must be true or false")
			}
			*field(t) = b != inverted
			return nil
		},
		isSet: func(t flotilla.Tenant) bool { return *field(&t) },
	}
}

var configKeys = map[string]configKey{
	"pollingTime": durationKey(func(s *flotilla.TenantSettings) *flotilla.Duration { return &s.PollingTime },
		func(srv *Server) time.Duration { return srv.core.Config.PollInterval }),
	"minPollingTime": durationKey(func(s *flotilla.TenantSettings) *flotilla.Duration { return &s.MinPollingTime },
		func(*Server) time.Duration { return 30 * time.Second }),
	"pollingOverdueTime": durationKey(func(s *flotilla.TenantSettings) *flotilla.Duration { return &s.PollingOverdueTime },
		func(srv *Server) time.Duration { return srv.core.Config.PollInterval }),
	"maintenanceWindowPollCount": {
		get: func(t flotilla.Tenant, _ *Server) any {
			if t.Settings.MaintenanceWindowPollCount == 0 {
				return 3
			}
			return t.Settings.MaintenanceWindowPollCount
		},
		set: func(t *flotilla.Tenant, v json.RawMessage) error {
			var n int
			if err := json.Unmarshal(v, &n); err != nil || n < 1 {
				return flotilla.Errorf(flotilla.EInvalid, "value must be a number from 1")
			}
			t.Settings.MaintenanceWindowPollCount = n
			return nil
		},
		isSet: func(t flotilla.Tenant) bool { return t.Settings.MaintenanceWindowPollCount != 0 },
	},
	"authentication.targettoken.enabled":  boolKey(func(t *flotilla.Tenant) *bool { return &t.Settings.TargetTokenDisabled }, true),
	"authentication.gatewaytoken.enabled": boolKey(func(t *flotilla.Tenant) *bool { return &t.Settings.GatewayTokenDisabled }, true),
	"authentication.header.enabled":       boolKey(func(t *flotilla.Tenant) *bool { return &t.Settings.HeaderAuth }, false),
	"anonymous.download.enabled":          boolKey(func(t *flotilla.Tenant) *bool { return &t.Settings.AnonymousDownload }, false),
	"authentication.header.authority": {
		get: func(t flotilla.Tenant, _ *Server) any { return t.Settings.HeaderAuthority },
		set: func(t *flotilla.Tenant, v json.RawMessage) error {
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return flotilla.Errorf(flotilla.EInvalid, "value must be a string: the accepted issuer hashes")
			}
			t.Settings.HeaderAuthority = s
			return nil
		},
		isSet: func(t flotilla.Tenant) bool { return t.Settings.HeaderAuthority != "" },
	},
	// authentication.gatewaytoken.key is handled apart: setting it makes a
	// token.
}

const gatewayKey = "authentication.gatewaytoken.key"

func hms(d time.Duration) string {
	s := int(d.Seconds())
	return fmt.Sprintf("%02d:%02d:%02d", s/3600, s/60%60, s%60)
}

func parseHMS(s string) (time.Duration, error) {
	var h, m, sec int
	if n, err := fmt.Sscanf(s, "%d:%d:%d", &h, &m, &sec); err != nil || n != 3 || h < 0 || m < 0 || m > 59 || sec < 0 || sec > 59 {
		return 0, flotilla.Errorf(flotilla.EInvalid, "%q is not a duration HH:mm:ss", s)
	}
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec)*time.Second, nil
}

type configJSON struct {
	Value          any    `json:"value"`
	Global         bool   `json:"global"`
	CreatedAt      int64  `json:"createdAt,omitempty"`
	CreatedBy      string `json:"createdBy,omitempty"`
	LastModifiedAt int64  `json:"lastModifiedAt,omitempty"`
	LastModifiedBy string `json:"lastModifiedBy,omitempty"`
	Links          links  `json:"_links"`
}

func configNotFound(key string) error {
	return flotilla.Errorf(flotilla.ENotFound, "Configuration key '%s' is not supported.", key)
}

// tenant reads the tenant for config access (tenants:write: settings say
// how devices authenticate).
func (s *Server) tenant(r *http.Request, c call) (flotilla.Tenant, error) {
	if err := c.p.Require(flotilla.ScopeTenantsWrite); err != nil {
		return flotilla.Tenant{}, err
	}
	return s.core.GetTenant(r.Context(), c.p, c.tenant)
}

func (s *Server) config(r *http.Request, c call, t flotilla.Tenant, key string) (configJSON, error) {
	out := configJSON{Links: links{"self": {s.base(r) + "/system/configs/" + key}}}
	if key == gatewayKey {
		v, err := s.core.GatewayKey(r.Context(), c.p, c.tenant)
		if err != nil {
			return out, err
		}
		out.Value, out.Global = v, v == ""
		return out, nil
	}
	k, ok := configKeys[key]
	if !ok {
		return out, configNotFound(key)
	}
	out.Value, out.Global = k.get(t, s), !k.isSet(t)
	return out, nil
}

func (s *Server) listConfigs(w http.ResponseWriter, r *http.Request, c call) {
	t, err := s.tenant(r, c)
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := map[string]configJSON{}
	for key := range configKeys {
		if out[key], err = s.config(r, c, t, key); err != nil {
			s.error(w, r, err)
			return
		}
	}
	if out[gatewayKey], err = s.config(r, c, t, gatewayKey); err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getConfig(w http.ResponseWriter, r *http.Request, c call) {
	t, err := s.tenant(r, c)
	if err != nil {
		s.error(w, r, err)
		return
	}
	out, err := s.config(r, c, t, r.PathValue("key"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// putConfig sets a key; it takes effect on the devices' next request.
func (s *Server) putConfig(w http.ResponseWriter, r *http.Request, c call) {
	key := r.PathValue("key")
	var body struct {
		Value json.RawMessage `json:"value"`
	}
	t, err := s.tenant(r, c)
	if err == nil {
		err = decode(r, &body)
	}
	if err == nil && len(body.Value) == 0 {
		err = flotilla.Errorf(flotilla.EInvalid, `send {"value": ...}`)
	}
	if err == nil {
		err = s.setConfig(r, c, &t, key, body.Value)
	}
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.getConfig(w, r, c)
}

func (s *Server) setConfig(r *http.Request, c call, t *flotilla.Tenant, key string, v json.RawMessage) error {
	if key == gatewayKey {
		var secret string
		if err := json.Unmarshal(v, &secret); err != nil {
			return flotilla.Errorf(flotilla.EInvalid, "value must be a string: the gateway token")
		}
		return s.core.SetGatewayKey(r.Context(), c.p, c.tenant, strings.TrimSpace(secret))
	}
	k, ok := configKeys[key]
	if !ok {
		return configNotFound(key)
	}
	if err := k.set(t, v); err != nil {
		return err
	}
	_, err := s.core.UpdateTenant(r.Context(), c.p, c.tenant, core.TenantPatch{Settings: &t.Settings})
	return err
}

// deleteConfig returns a key to its default.
func (s *Server) deleteConfig(w http.ResponseWriter, r *http.Request, c call) {
	key := r.PathValue("key")
	t, err := s.tenant(r, c)
	if err == nil {
		if key == gatewayKey {
			err = s.core.SetGatewayKey(r.Context(), c.p, c.tenant, "")
		} else if _, ok := configKeys[key]; !ok {
			err = configNotFound(key)
		} else {
			zeroField(&t, key)
			_, err = s.core.UpdateTenant(r.Context(), c.p, c.tenant, core.TenantPatch{Settings: &t.Settings})
		}
	}
	if err != nil {
		s.error(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// zeroField resets one setting to "not set".
func zeroField(t *flotilla.Tenant, key string) {
	s := &t.Settings
	switch key {
	case "pollingTime":
		s.PollingTime = 0
	case "minPollingTime":
		s.MinPollingTime = 0
	case "pollingOverdueTime":
		s.PollingOverdueTime = 0
	case "maintenanceWindowPollCount":
		s.MaintenanceWindowPollCount = 0
	case "authentication.targettoken.enabled":
		s.TargetTokenDisabled = false
	case "authentication.gatewaytoken.enabled":
		s.GatewayTokenDisabled = false
	case "authentication.header.enabled":
		s.HeaderAuth = false
	case "authentication.header.authority":
		s.HeaderAuthority = ""
	case "anonymous.download.enabled":
		s.AnonymousDownload = false
	}
}
