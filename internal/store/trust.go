package store

import (
	"context"
	"time"
)

// TrustKey is one of a tenant's online TUF keys (snapshot or timestamp),
// its private half sealed by the server's secret key.
type TrustKey struct {
	Tenant, Role, KeyID string
	// Public is the TUF key object (JSON); PrivateSealed the sealed
	// private key.
	Public, PrivateSealed string
	CreatedAt             time.Time
}

// TrustMetadata is one version of one role's signed TUF metadata.
type TrustMetadata struct {
	Tenant, Role string
	Version      int64
	Body         []byte
	Expires      time.Time
	CreatedAt    time.Time
}

// Trust stores each tenant's TUF repository: its online keys and every
// version of its metadata.
type Trust interface {
	// TrustKeys returns the tenant's online keys (none before first use).
	TrustKeys(ctx context.Context, tenant string) ([]TrustKey, error)
	// AddTrustKeys inserts keys in one transaction; EConflict if the
	// tenant has a key for one of the roles already (another replica made
	// them first: read them again).
	AddTrustKeys(ctx context.Context, keys []TrustKey) error
	// LatestTrustMetadata returns the newest version of a role, or
	// ENotFound.
	LatestTrustMetadata(ctx context.Context, tenant, role string) (TrustMetadata, error)
	// TrustMetadataVersion returns one version of a role, or ENotFound.
	TrustMetadataVersion(ctx context.Context, tenant, role string, version int64) (TrustMetadata, error)
	// LatestTrustVersion is the newest version of a role (0 if none).
	LatestTrustVersion(ctx context.Context, tenant, role string) (int64, error)
	// AddTrustMetadata inserts versions in one transaction: all or none;
	// EConflict if a (tenant, role, version) exists — another writer got
	// there first.
	AddTrustMetadata(ctx context.Context, ms []TrustMetadata) error
	// TrustTenants lists the tenants that have metadata of role.
	TrustTenants(ctx context.Context, role string) ([]string, error)
	// PruneTrustMetadata deletes the versions of a role older than the
	// newest keep.
	PruneTrustMetadata(ctx context.Context, tenant, role string, keep int) error
}
