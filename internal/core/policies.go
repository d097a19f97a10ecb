package core

import (
	"context"

	"github.com/flotilla-ota/flotilla"
)

// resolvePolicy returns the inline policy or the named one.
func (c *Core) resolvePolicy(ctx context.Context, tenant string, inline *flotilla.Policy, name string) (flotilla.Policy, error) {
	switch {
	case inline != nil && name != "":
		return flotilla.Policy{}, flotilla.Errorf(flotilla.EInvalid, "give either policy or policy_name, not both")
	case name != "":
		rec, err := c.Store.GetPolicy(ctx, tenant, name)
		if err != nil {
			return flotilla.Policy{}, err
		}
		return rec.Policy, nil
	case inline != nil:
		return *inline, inline.Validate()
	}
	return flotilla.Policy{}, nil
}

// PutPolicy creates or replaces a named policy.
func (c *Core) PutPolicy(ctx context.Context, p Principal, tenant, name string, pol flotilla.Policy) (flotilla.NamedPolicy, bool, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return flotilla.NamedPolicy{}, false, err
	}
	if err := p.Require(flotilla.ScopeRolloutsWrite); err != nil {
		return flotilla.NamedPolicy{}, false, err
	}
	if err := flotilla.ValidateName("policy", name); err != nil {
		return flotilla.NamedPolicy{}, false, err
	}
	if err := pol.Validate(); err != nil {
		return flotilla.NamedPolicy{}, false, err
	}
	now := c.Now()
	rec := flotilla.NamedPolicy{Tenant: tenant, Name: name, Policy: pol, CreatedAt: now, UpdatedAt: now}
	created, err := c.Store.PutPolicy(ctx, rec)
	if err != nil {
		return rec, false, err
	}
	rec, err = c.Store.GetPolicy(ctx, tenant, name)
	return rec, created, err
}

// GetPolicy returns a named policy.
func (c *Core) GetPolicy(ctx context.Context, p Principal, tenant, name string) (flotilla.NamedPolicy, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return flotilla.NamedPolicy{}, err
	}
	if err := p.Require(flotilla.ScopeRolloutsRead); err != nil {
		return flotilla.NamedPolicy{}, err
	}
	return c.Store.GetPolicy(ctx, tenant, name)
}

// ListPolicies lists named policies.
func (c *Core) ListPolicies(ctx context.Context, p Principal, tenant string) ([]flotilla.NamedPolicy, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return nil, err
	}
	if err := p.Require(flotilla.ScopeRolloutsRead); err != nil {
		return nil, err
	}
	return c.Store.ListPolicies(ctx, tenant)
}

// DeletePolicy removes a named policy; rollouts keep their copy.
func (c *Core) DeletePolicy(ctx context.Context, p Principal, tenant, name string) error {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return err
	}
	if err := p.Require(flotilla.ScopeRolloutsWrite); err != nil {
		return err
	}
	return c.Store.DeletePolicy(ctx, tenant, name)
}
