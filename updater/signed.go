package updater

import (
	"context"
	"fmt"

	"github.com/flotilla-ota/flotilla/tuf"
)

// checkSigned looks the update up in the tenant's signed metadata before
// anything is downloaded: it must be signed and not a downgrade, and from
// here on its artifacts are checked against the signed length and hashes,
// not the ones the server sent.
func (c *Client) checkSigned(ctx context.Context, u *Update) error {
	if c.trust == nil {
		return nil
	}
	current := c.Version()
	u.Signed = make([]*tuf.Target, len(u.Artifacts))
	for i, a := range u.Artifacts {
		t, err := c.trust.Target(ctx, tuf.Path(u.Name, u.Version, a.Filename))
		if err != nil {
			return err
		}
		if err := t.CheckVersion(current); err != nil {
			return err
		}
		u.Signed[i] = t
		u.Artifacts[i].Size, u.Artifacts[i].SHA256, u.Artifacts[i].SHA512 = t.Length, t.Hashes["sha256"], t.Hashes["sha512"]
	}
	return nil
}

// checkPayload verifies what a handler's own Fetch produced against the
// signed hashes (DefaultFetcher's downloads are checked as they land).
func (c *Client) checkPayload(u *Update, p *Payload) error {
	if c.trust == nil || u.verified {
		return nil
	}
	files := p.Files
	if len(files) == 0 && p.Path != "" {
		files = []string{p.Path}
	}
	if len(files) != len(u.Signed) {
		return fmt.Errorf("the handler fetched %d files for %d signed artifacts: cannot check them", len(files), len(u.Signed))
	}
	for i, f := range files {
		if err := u.Signed[i].CheckFile(f); err != nil {
			return err
		}
	}
	return nil
}
