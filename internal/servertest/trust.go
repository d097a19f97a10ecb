package servertest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/flotilla-ota/flotilla/internal/tufrepo"
)

// Operator holds a tenant's offline TUF keys and signs through the
// management API, as `flotilla trust init` and `release sign` do.
type Operator struct {
	RootKey, TargetsKey ed25519.PrivateKey
	// Root is the signed root.json devices pin.
	Root    []byte
	targets *metadata.Metadata[metadata.TargetsType]
}

// SignTenant makes the API's tenant signed (root and targets version 1).
func SignTenant(api *API) *Operator {
	api.T.Helper()
	o := &Operator{}
	o.RootKey, _ = tufrepo.GenerateKey()
	o.TargetsKey, _ = tufrepo.GenerateKey()
	var st struct {
		OnlineKeys map[string]json.RawMessage `json:"online_keys"`
	}
	api.Must(200, "GET", "/api/v1/trust", nil, &st)
	var snap, ts metadata.Key
	json.Unmarshal(st.OnlineKeys["snapshot"], &snap)
	json.Unmarshal(st.OnlineKeys["timestamp"], &ts)
	root := tufrepo.NewRoot(o.RootKey, o.TargetsKey, &snap, &ts, time.Now().Add(24*time.Hour))
	root.Sign(tufrepo.Signer(o.RootKey))
	o.Root, _ = root.ToBytes(false)
	o.targets, _ = tufrepo.NextTargets(nil, time.Now().Add(24*time.Hour))
	o.targets.Sign(tufrepo.Signer(o.TargetsKey))
	tb, _ := o.targets.ToBytes(false)
	api.Must(200, "POST", "/api/v1/trust/metadata", map[string]json.RawMessage{"root": o.Root, "targets": tb}, nil)
	return o
}

// Sign adds the release NAME/VERSION/FILENAME with these bytes to the
// signed targets.
func (o *Operator) Sign(api *API, name, version, filename string, data []byte) {
	api.T.Helper()
	s256, s512 := sha256.Sum256(data), sha512.Sum512(data)
	tf, err := tufrepo.NewTarget(int64(len(data)), hex.EncodeToString(s256[:]), hex.EncodeToString(s512[:]), tufrepo.Custom{Name: name, Version: version})
	if err != nil {
		api.T.Fatal(err)
	}
	next, _ := tufrepo.NextTargets(o.targets, time.Now().Add(24*time.Hour))
	next.Signed.Targets[name+"/"+version+"/"+filename] = tf
	next.Sign(tufrepo.Signer(o.TargetsKey))
	tb, _ := next.ToBytes(false)
	api.Must(200, "POST", "/api/v1/trust/metadata", map[string]json.RawMessage{"targets": tb}, nil)
	o.targets = next
}
