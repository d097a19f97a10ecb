package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"

	"github.com/flotilla-ota/flotilla/api"
	"github.com/flotilla-ota/flotilla/internal/tufrepo"
)

// The offline side of signed releases. Keys are made and used here, on the
// operator's machine; the server receives only signed metadata. Nothing the
// server says is signed without being checked first: its roots must follow
// from the operator's own root.json, its targets must carry the operator's
// signature.

const (
	rootKeyFile    = "root.key"
	targetsKeyFile = "targets.key"
	rootFile       = "root.json"
)

func (s *session) trustCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "trust", Short: "Sign releases with offline keys (TUF): init, status, rotate"}
	var keys string
	var expires time.Duration
	init := &cobra.Command{
		Use:   "init",
		Short: "Make the tenant signed: generate root and targets keys into --keys DIR and publish root version 1",
		Long: `Generate the root and targets keys (ed25519, files readable by you only) into DIR, fetch
the server's online snapshot and timestamp keys, sign root.json version 1 and an empty
targets.json, and publish them. DIR/root.json is the file devices pin
(flotilla agent --trust DIR/root.json, updater.Config.TrustedRoot).

From then on only releases signed with flotilla release sign can be assigned, rolled out
or pushed in the tenant. Keep DIR offline; back it up.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keys == "" {
				return Usagef("give --keys DIR: where the offline keys go")
			}
			c, err := s.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var st api.TrustStatus
			if err := c.Do(ctx, http.MethodGet, "/api/v1/trust", nil, &st); err != nil {
				return err
			}
			if st.Signed {
				return fmt.Errorf("the tenant already has root version %d: use flotilla trust rotate to change keys", st.Versions["root"])
			}
			snap, ts, err := onlineKeys(st)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(keys, 0o700); err != nil {
				return err
			}
			rootKey, err := tufrepo.GenerateKey()
			if err != nil {
				return err
			}
			targetsKey, err := tufrepo.GenerateKey()
			if err != nil {
				return err
			}
			for name, k := range map[string]ed25519.PrivateKey{rootKeyFile: rootKey, targetsKeyFile: targetsKey} {
				if err := tufrepo.WriteKey(filepath.Join(keys, name), k); err != nil {
					return err
				}
			}
			now := time.Now()
			root := tufrepo.NewRoot(rootKey, targetsKey, snap, ts, now.Add(expires))
			if _, err := root.Sign(tufrepo.Signer(rootKey)); err != nil {
				return err
			}
			targets, _ := tufrepo.NextTargets(nil, now.Add(expires))
			if _, err := targets.Sign(tufrepo.Signer(targetsKey)); err != nil {
				return err
			}
			rb, _ := root.ToBytes(true)
			tb, _ := targets.ToBytes(false)
			if err := c.Do(ctx, http.MethodPost, "/api/v1/trust/metadata", api.TrustMetadata{Root: rb, Targets: tb}, &st); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(keys, rootFile), rb, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(s.stdout, "Tenant signed: root version 1, keys in %s (keep them offline).\n", keys)
			fmt.Fprintf(s.stdout, "Devices pin %s: flotilla agent --trust %s\n", filepath.Join(keys, rootFile), filepath.Join(keys, rootFile))
			fmt.Fprintf(s.stdout, "Sign each release before deploying it: flotilla release sign NAME VERSION --keys %s\n", keys)
			return nil
		},
	}
	init.Flags().StringVar(&keys, "keys", "", "directory for the offline keys (created)")
	init.Flags().DurationVar(&expires, "expires", 365*24*time.Hour, "how long root and targets metadata are valid")

	status := &cobra.Command{
		Use:   "status",
		Short: "Show whether the tenant is signed, its metadata versions and expiry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := s.client()
			if err != nil {
				return err
			}
			var st api.TrustStatus
			if err := c.Do(cmd.Context(), http.MethodGet, "/api/v1/trust", nil, &st); err != nil {
				return err
			}
			return s.print(st, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "signed\t%v\n", st.Signed)
				fmt.Fprintf(w, "releases signed\t%d\n", st.Releases)
				fmt.Fprintf(w, "metadata\t%s\n", st.MetadataURL)
				for _, role := range []string{"root", "targets", "snapshot", "timestamp"} {
					if v, ok := st.Versions[role]; ok {
						fmt.Fprintf(w, "%s\tversion %d, expires %s\n", role, v, st.Expires[role].Local().Format(time.RFC3339))
					}
				}
			})
		},
	}

	var role string
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Replace the root or the targets key (a new root version signed by the old and new keys)",
		Long: `Generate a new key for --role (root or targets) into --keys DIR (the old key file is kept
as ROLE.key.retired-N), publish the next root version naming it — signed with the old and
the new root key, as TUF requires — and, for targets, the current targets re-signed with
the new key in the same request. Devices follow the new root from the one they pinned.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keys == "" || (role != "root" && role != "targets") {
				return Usagef("give --keys DIR and --role root or --role targets")
			}
			c, err := s.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			root, err := trustedRoot(ctx, c, keys)
			if err != nil {
				return err
			}
			rootKey, err := keyFor(keys, rootKeyFile, root, tufrepo.Root)
			if err != nil {
				return err
			}
			fresh, err := tufrepo.GenerateKey()
			if err != nil {
				return err
			}
			now := time.Now()
			next, err := tufrepo.NextRoot(root, now.Add(expires))
			if err != nil {
				return err
			}
			if err := tufrepo.ReplaceKey(next, role, tufrepo.PublicKey(fresh)); err != nil {
				return err
			}
			signers := []ed25519.PrivateKey{rootKey}
			if role == "root" {
				signers = append(signers, fresh)
			}
			for _, k := range signers {
				if _, err := next.Sign(tufrepo.Signer(k)); err != nil {
					return err
				}
			}
			body := api.TrustMetadata{}
			body.Root, _ = next.ToBytes(true)
			if role == "targets" {
				cur, err := currentTargets(ctx, c, root)
				if err != nil {
					return err
				}
				t, err := tufrepo.NextTargets(cur, now.Add(expires))
				if err != nil {
					return err
				}
				if _, err := t.Sign(tufrepo.Signer(fresh)); err != nil {
					return err
				}
				body.Targets, _ = t.ToBytes(false)
			}
			// The new key is on disk before anything is published.
			keyFile := filepath.Join(keys, role+".key")
			retired := keyFile + ".retired-" + strconv.FormatInt(root.Signed.Version, 10)
			if err := os.Rename(keyFile, retired); err != nil {
				return err
			}
			if err := tufrepo.WriteKey(keyFile, fresh); err != nil {
				os.Rename(retired, keyFile)
				return err
			}
			var st api.TrustStatus
			if err := c.Do(ctx, http.MethodPost, "/api/v1/trust/metadata", body, &st); err != nil {
				os.Remove(keyFile)
				os.Rename(retired, keyFile)
				return err
			}
			if err := os.WriteFile(filepath.Join(keys, rootFile), body.Root, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(s.stdout, "Rotated the %s key: root version %d published; the old key is %s.\n", role, next.Signed.Version, retired)
			return nil
		},
	}
	rotate.Flags().StringVar(&keys, "keys", "", "directory of the offline keys")
	rotate.Flags().StringVar(&role, "role", "", "root or targets")
	rotate.Flags().DurationVar(&expires, "expires", 365*24*time.Hour, "how long the new metadata is valid")
	cmd.AddCommand(init, status, rotate)
	return cmd
}

func (s *session) releaseCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "release", Short: "Make releases of several modules; sign releases for devices that verify them (TUF)"}
	var keys, file string
	var allowDowngrade, withSHA512 bool
	var expires time.Duration
	sign := &cobra.Command{
		Use:   "sign NAME VERSION",
		Short: "Add an uploaded artifact to the signed targets metadata",
		Long: `Sign artifact NAME VERSION with the targets key in --keys DIR: its length and sha256 are
taken from the server and, with --file, checked against your own copy. With --sha512 (and
--file) the copy's sha512 is signed too, and devices check both (it costs them about three
times the hashing of sha256 alone). The server's current targets metadata is checked against
your keys first, so a server cannot slip anything into what you sign. --allow-downgrade lets
devices on a newer version install this one.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keys == "" {
				return Usagef("give --keys DIR: the directory flotilla trust init wrote")
			}
			c, err := s.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var a api.Artifact
			if err := c.Do(ctx, http.MethodGet, "/api/v1/artifacts/"+args[0]+"/"+args[1], nil, &a); err != nil {
				return err
			}
			sha512Hex := ""
			if withSHA512 && file == "" {
				return Usagef("--sha512 needs --file: the sha512 is taken from your copy")
			}
			if file != "" {
				n, s256, s512, err := hashFile(file)
				if err != nil {
					return err
				}
				if n != a.Size || s256 != a.SHA256 {
					return fmt.Errorf("%s is not what the server holds as %s %s: %d bytes, sha256 %s; the server has %d bytes, sha256 %s — nothing was signed",
						file, a.Name, a.Version, n, s256, a.Size, a.SHA256)
				}
				if withSHA512 {
					sha512Hex = s512
				}
			}
			root, err := trustedRoot(ctx, c, keys)
			if err != nil {
				return err
			}
			targetsKey, err := keyFor(keys, targetsKeyFile, root, tufrepo.Targets)
			if err != nil {
				return err
			}
			cur, err := currentTargets(ctx, c, root)
			if err != nil {
				return err
			}
			next, err := tufrepo.NextTargets(cur, time.Now().Add(expires))
			if err != nil {
				return err
			}
			tf, err := tufrepo.NewTarget(a.Size, a.SHA256, sha512Hex, tufrepo.Custom{Name: a.Name, Version: a.Version, Type: a.Type, AllowDowngrade: allowDowngrade})
			if err != nil {
				return err
			}
			filename := a.Filename
			if filename == "" {
				filename = a.Name + "-" + a.Version
			}
			path := a.Name + "/" + a.Version + "/" + filename
			next.Signed.Targets[path] = tf
			if _, err := next.Sign(tufrepo.Signer(targetsKey)); err != nil {
				return err
			}
			body := api.TrustMetadata{}
			body.Targets, _ = next.ToBytes(false)
			var st api.TrustStatus
			if err := c.Do(ctx, http.MethodPost, "/api/v1/trust/metadata", body, &st); err != nil {
				return err
			}
			fmt.Fprintf(s.stdout, "Signed %s (%d bytes, sha256 %s) in targets version %d.\n", path, a.Size, a.SHA256, next.Signed.Version)
			return nil
		},
	}
	sign.Flags().StringVar(&keys, "keys", "", "directory of the offline keys")
	sign.Flags().StringVar(&file, "file", "", "your copy of the artifact, checked against the server's before signing")
	sign.Flags().BoolVar(&withSHA512, "sha512", false, "also sign the sha512 of --file (devices check both)")
	sign.Flags().BoolVar(&allowDowngrade, "allow-downgrade", false, "let devices on a newer version install this release")
	sign.Flags().DurationVar(&expires, "expires", 365*24*time.Hour, "how long the new targets metadata is valid")
	cmd.AddCommand(sign, s.releaseCreateCmd())
	return cmd
}

func onlineKeys(st api.TrustStatus) (snap, ts *metadata.Key, err error) {
	snap, ts = &metadata.Key{}, &metadata.Key{}
	if err := json.Unmarshal(st.OnlineKeys["snapshot"], snap); err != nil {
		return nil, nil, fmt.Errorf("the server gave no snapshot key: %w", err)
	}
	if err := json.Unmarshal(st.OnlineKeys["timestamp"], ts); err != nil {
		return nil, nil, fmt.Errorf("the server gave no timestamp key: %w", err)
	}
	return snap, ts, nil
}

// trustedRoot follows the server's roots from DIR/root.json, checking each
// as a device would, and returns the newest.
func trustedRoot(ctx context.Context, c *Client, dir string) (*metadata.Metadata[metadata.RootType], error) {
	b, err := os.ReadFile(filepath.Join(dir, rootFile))
	if err != nil {
		return nil, fmt.Errorf("read the trusted root: %w (run flotilla trust init first)", err)
	}
	tm, err := trustedmetadata.New(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, rootFile), err)
	}
	for {
		v := tm.Root.Signed.Version + 1
		var raw json.RawMessage
		err := c.Do(ctx, http.MethodGet, "/api/v1/trust/metadata/"+strconv.FormatInt(v, 10)+".root.json", nil, &raw)
		var ae *APIError
		if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
			return tm.Root, nil
		}
		if err != nil {
			return nil, err
		}
		if _, err := tm.UpdateRoot(raw); err != nil {
			return nil, fmt.Errorf("the server's root version %d does not follow from your root.json: %w — nothing was signed", v, err)
		}
	}
}

// currentTargets is the server's targets metadata, accepted only with the
// root's targets signatures.
func currentTargets(ctx context.Context, c *Client, root *metadata.Metadata[metadata.RootType]) (*metadata.Metadata[metadata.TargetsType], error) {
	var raw json.RawMessage
	if err := c.Do(ctx, http.MethodGet, "/api/v1/trust/metadata/targets.json", nil, &raw); err != nil {
		return nil, err
	}
	t, err := metadata.Targets().FromBytes(raw)
	if err != nil {
		return nil, err
	}
	if err := root.VerifyDelegate(tufrepo.Targets, t); err != nil {
		return nil, fmt.Errorf("the server's targets.json (version %d) is not signed by your targets key: %w — nothing was signed", t.Signed.Version, err)
	}
	return t, nil
}

// keyFor loads DIR/name and checks that root trusts it for role.
func keyFor(dir, name string, root *metadata.Metadata[metadata.RootType], role string) (ed25519.PrivateKey, error) {
	k, err := tufrepo.ReadKey(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	id := tufrepo.KeyID(k)
	for _, have := range root.Signed.Roles[role].KeyIDs {
		if have == id {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%s is not a %s key of root version %d", filepath.Join(dir, name), role, root.Signed.Version)
}

func hashFile(path string) (n int64, s256, s512 string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", "", err
	}
	defer f.Close()
	h256, h512 := sha256.New(), sha512.New()
	n, err = io.Copy(io.MultiWriter(h256, h512), f)
	return n, hex.EncodeToString(h256.Sum(nil)), hex.EncodeToString(h512.Sum(nil)), err
}
