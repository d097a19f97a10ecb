// Package server assembles a running Flotilla control plane from a Config:
// it opens the store and blob store, bootstraps the default tenant, mounts
// the management API, the device API, the UI and the operational endpoints
// on one handler, and serves until its context ends.
package server

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/dmf"
)

// Config is everything the server needs; cmd/flotilla fills it from flags
// and environment.
type Config struct {
	Listen      string
	DataDir     string
	DatabaseURL string // sqlite://path or postgres://...
	BlobDir     string
	// BlobURL selects another blob store: s3://bucket?endpoint=host:port.
	BlobURL string
	// PresignDownloads points DDI download links at the blob store
	// directly (presigned, valid PresignTTL), when it can presign.
	PresignDownloads bool
	PresignTTL       time.Duration
	PublicURL        string
	AdminToken       string
	// GatewayToken, if set, is a gateway token of the default tenant
	// (devices register themselves with it).
	GatewayToken string
	// SecretKey seals the credentials the server reads back (package
	// secret); every replica of a cluster needs the same. Empty: the key
	// in DataDir/secret.key, created on first start.
	SecretKey string
	// MaxArtifactSize bounds uploads (bytes).
	MaxArtifactSize int64
	// PollInterval is the DDI polling sleep.
	PollInterval time.Duration
	// OfflineAfter is when an unseen device counts as offline.
	OfflineAfter time.Duration
	// FeedbackHold is how long a device's intermediate feedback may wait
	// to be written with its next report (core.Config.HoldFeedback).
	// Default (0): 1s with SQLite, whose single writer it relieves; off
	// with PostgreSQL, whose replicas behind a balancer would each hold a
	// device's steps apart. Negative: off.
	FeedbackHold time.Duration
	// TLSCert and TLSKey serve HTTPS (PEM files, re-read when they change
	// or on SIGHUP). ClientCA lets devices authenticate to DDI with a
	// client certificate whose common name is their id.
	TLSCert, TLSKey, ClientCA string
	// TrustedProxies are the reverse proxies (CIDRs) whose X-Forwarded-For
	// and client-certificate headers count.
	TrustedProxies []string
	// BodyReadTimeout bounds the wait for each read of a request body
	// (default 10s); bodies must also average 1 KiB/s after 10s.
	BodyReadTimeout time.Duration
	// ShutdownTimeout bounds graceful shutdown.
	ShutdownTimeout time.Duration
	// TUFTimestampExpiry is how long each signed TUF timestamp is valid
	// (default 24h; re-signed at half of that). A device that sees none
	// fresher for that long stops installing (freeze protection).
	TUFTimestampExpiry time.Duration
	// Scheduler settings; NoScheduler leaves rollouts to other replicas.
	SchedulerTick  time.Duration
	SchedulerLease time.Duration
	NoScheduler    bool
	// RolloutWriteWholeUpTo is how many devices a rollout may have and
	// still have every deployment written when it starts (default 20,000);
	// larger rollouts write their first wave then and the others after.
	RolloutWriteWholeUpTo int
	// ReplicaID names this process in leases (default: random).
	ReplicaID string
	// PushWorkers bounds concurrent push deliveries (default 16).
	PushWorkers int
	// PushLease bounds how long a crashed replica's push deliveries wait
	// before another replica resumes them (default 15s).
	PushLease time.Duration
	// DMF connects hawkBit's Device Management Federation API to these
	// brokers (see ParseAMQP).
	DMF []dmf.Config
	// SporeOpen serves the SPORE-compatible endpoints without a token.
	SporeOpen bool
	// Quotas bound what tenants, devices and deployments may store (zero
	// fields: core's defaults).
	Quotas core.Quotas
	// EventStreamsPerToken and EventStreams cap live event streams per
	// token (default 10) and in all (default 5000).
	EventStreamsPerToken, EventStreams int
	// DDIRate and DDIBurst bound each device's DDI requests per second
	// (default 30, bursts of 300; a negative rate turns the limit off).
	DDIRate, DDIBurst int
	// AuthFailureRate and AuthFailureBurst bound failed authentications
	// per client address and second (default 5, bursts of 50; negative:
	// off).
	AuthFailureRate, AuthFailureBurst int
}

// withDefaults fills in derived settings.
func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	if c.DataDir == "" {
		c.DataDir = "flotilla-data"
	}
	if c.DatabaseURL == "" {
		c.DatabaseURL = "sqlite://" + filepath.Join(c.DataDir, "flotilla.db")
	}
	if c.BlobDir == "" {
		c.BlobDir = filepath.Join(c.DataDir, "blobs")
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	if c.FeedbackHold == 0 {
		c.FeedbackHold = time.Second
		if kind, _, _ := ParseDatabaseURL(c.DatabaseURL); kind == DBPostgres {
			c.FeedbackHold = -1
		}
	}
	if c.DDIRate == 0 {
		c.DDIRate = 30
	}
	if c.DDIBurst <= 0 {
		c.DDIBurst = 300
	}
	if c.AuthFailureRate == 0 {
		c.AuthFailureRate = 5
	}
	if c.AuthFailureBurst <= 0 {
		c.AuthFailureBurst = 50
	}
	return c
}

// Database kinds.
const (
	DBSQLite   = "sqlite"
	DBPostgres = "postgres"
)

// ParseDatabaseURL splits a database URL into its kind and the
// driver-specific location: a file path for SQLite, the DSN for Postgres.
func ParseDatabaseURL(u string) (kind, location string, err error) {
	switch {
	case strings.HasPrefix(u, "sqlite://"):
		return DBSQLite, strings.TrimPrefix(u, "sqlite://"), nil
	case strings.HasPrefix(u, "sqlite:"):
		return DBSQLite, strings.TrimPrefix(u, "sqlite:"), nil
	case strings.HasPrefix(u, "postgres://"), strings.HasPrefix(u, "postgresql://"):
		return DBPostgres, u, nil
	}
	return "", "", fmt.Errorf("database URL %q: use sqlite://PATH or postgres://USER@HOST:PORT/DB", u)
}
