package pushd

import (
	"context"
	"errors"
	"net/http"
	"os"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/push"
)

// nodeTimeout bounds the calls an API request makes to a node.
const nodeTimeout = 15 * time.Second

// nodeError turns a node's refusal or silence into an API error. The
// caller learns a category — refused by the node, unreachable, timed out —
// never the raw dial error, which would map the server's network for
// whoever can register an address; the log keeps the whole story.
func (p *Pool) nodeError(dev flotilla.Device, err error) error {
	var ne *push.NodeError
	if errors.As(err, &ne) {
		p.log.Warn("push node refused", "device", dev.ID, "address", dev.Address, "status", ne.Status, "message", ne.Message)
		switch ne.Status {
		case http.StatusConflict:
			msg := ne.Message
			if ne.Current != "" {
				msg += " (current update " + ne.Current + ")"
			}
			return flotilla.Errorf(flotilla.EConflict, "node %s refused: %s", dev.ID, msg)
		case http.StatusBadRequest:
			return flotilla.Errorf(flotilla.EInvalid, "node %s refused the request: %s", dev.ID, ne.Message)
		case http.StatusUnauthorized, http.StatusForbidden:
			return flotilla.Errorf(flotilla.EBadGateway, "node %s: refused by node (%d): it does not accept this server's node token; configure the token from POST /api/v1/devices/%s/node-token on the node", dev.ID, ne.Status, dev.ID)
		}
		return flotilla.Errorf(flotilla.EBadGateway, "node %s: refused by node (%d)", dev.ID, ne.Status)
	}
	p.log.Warn("push node unreachable", "device", dev.ID, "address", dev.Address, "err", err)
	if errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err) {
		return flotilla.Errorf(flotilla.EBadGateway, "node %s: timeout", dev.ID)
	}
	return flotilla.Errorf(flotilla.EBadGateway, "node %s: unreachable", dev.ID)
}

// StartUpdate records a push update under the caller's id and returns once
// the node accepted it; the bytes follow in the background. The same id
// again returns the update as it stands.
func (p *Pool) StartUpdate(ctx context.Context, pr core.Principal, tenant, deviceID, updateID, name, version string) (flotilla.Deployment, push.Status, error) {
	tenant, err := pr.TenantFor(tenant)
	if err != nil {
		return flotilla.Deployment{}, push.Status{}, err
	}
	if err := pr.Require(flotilla.ScopeDevicesWrite); err != nil {
		return flotilla.Deployment{}, push.Status{}, err
	}
	if !push.ValidID(updateID) {
		return flotilla.Deployment{}, push.Status{}, flotilla.Errorf(flotilla.EInvalid, "id %q must be a UUID you choose for this update", updateID)
	}
	dev, err := p.st.GetDevice(ctx, tenant, deviceID)
	if err != nil {
		return flotilla.Deployment{}, push.Status{}, err
	}
	node, err := p.node(dev)
	if err != nil {
		return flotilla.Deployment{}, push.Status{}, err
	}
	if d, err := p.st.DeploymentByUpdateID(ctx, tenant, deviceID, updateID); err == nil {
		st, _ := node.Status(ctx)
		return d, st, nil
	}
	if name == "" || version == "" {
		return flotilla.Deployment{}, push.Status{}, flotilla.Errorf(flotilla.EInvalid, "artifact.name and artifact.version are required")
	}
	a, err := p.st.GetArtifact(ctx, tenant, name, version)
	if flotilla.IsCode(err, flotilla.ENotFound) {
		return flotilla.Deployment{}, push.Status{}, flotilla.Errorf(flotilla.ENotFound, "firmware %s %s not found in the registry", name, version)
	}
	if err != nil {
		return flotilla.Deployment{}, push.Status{}, err
	}
	if _, err := p.core.Blobs.Stat(ctx, a.SHA256); err != nil {
		return flotilla.Deployment{}, push.Status{}, flotilla.Errorf(flotilla.EUnavailable, "the blob store cannot serve %s %s right now; try again later", name, version)
	}
	// From here on the update belongs to the server, not to the request: a
	// caller that disconnects must not cancel it.
	ctx = context.WithoutCancel(ctx)
	// Recorded before the node is contacted.
	d, err := p.core.CreatePushDeployment(ctx, a, tenant, deviceID, updateID, NodeIP(dev.Address, dev.ID))
	if err != nil {
		return flotilla.Deployment{}, push.Status{}, err
	}
	dl := &delivery{p: p, d: d, dev: dev, a: a, node: node, ip: NodeIP(dev.Address, dev.ID)}
	nctx, cancel := context.WithTimeout(ctx, nodeTimeout)
	defer cancel()
	st, err := node.Start(nctx, p.startRequest(ctx, updateID, a))
	if err != nil {
		apiErr := p.nodeError(dev, err)
		dl.fail(ctx, flotilla.ErrorMessage(apiErr))
		return flotilla.Deployment{}, push.Status{}, apiErr
	}
	err = dl.accepted(ctx, 0)
	p.Wake()
	return dl.d, st, err
}

// UpdateStatus returns the deployment and the node's own status (nil when
// the node cannot be reached).
func (p *Pool) UpdateStatus(ctx context.Context, pr core.Principal, tenant, deviceID, updateID string) (flotilla.Deployment, *push.Status, error) {
	tenant, err := pr.TenantFor(tenant)
	if err != nil {
		return flotilla.Deployment{}, nil, err
	}
	if err := pr.Require(flotilla.ScopeDevicesRead); err != nil {
		return flotilla.Deployment{}, nil, err
	}
	d, err := p.st.DeploymentByUpdateID(ctx, tenant, deviceID, updateID)
	if err != nil {
		return d, nil, err
	}
	dev, err := p.st.GetDevice(ctx, tenant, deviceID)
	if err != nil {
		return d, nil, err
	}
	node, err := p.node(dev)
	if err != nil {
		return d, nil, nil
	}
	nctx, cancel := context.WithTimeout(ctx, nodeTimeout)
	defer cancel()
	st, err := node.Status(nctx)
	if err != nil {
		return d, nil, nil
	}
	return d, &st, nil
}

// AbortUpdate asks the node to abort; it refuses unless the id is its
// current update and it has not begun applying.
func (p *Pool) AbortUpdate(ctx context.Context, pr core.Principal, tenant, deviceID, updateID string) (flotilla.Deployment, push.Status, error) {
	tenant, err := pr.TenantFor(tenant)
	if err != nil {
		return flotilla.Deployment{}, push.Status{}, err
	}
	if err := pr.Require(flotilla.ScopeDevicesWrite); err != nil {
		return flotilla.Deployment{}, push.Status{}, err
	}
	dev, err := p.st.GetDevice(ctx, tenant, deviceID)
	if err != nil {
		return flotilla.Deployment{}, push.Status{}, err
	}
	node, err := p.node(dev)
	if err != nil {
		return flotilla.Deployment{}, push.Status{}, err
	}
	d, derr := p.st.DeploymentByUpdateID(ctx, tenant, deviceID, updateID)
	nctx, cancel := context.WithTimeout(ctx, nodeTimeout)
	defer cancel()
	st, err := node.Abort(nctx, updateID)
	if err != nil {
		return d, st, p.nodeError(dev, err)
	}
	if derr == nil && !d.State.Terminal() {
		dl := &delivery{p: p, d: d, dev: dev, node: node, ip: NodeIP(dev.Address, dev.ID)}
		dl.report(ctx, flotilla.Feedback{Execution: flotilla.ExecCanceled, Details: []string{"aborted on request; the node keeps version " + st.Version}}, false, "")
		d = dl.d
	}
	return d, st, nil
}
