// Package s3 stores blobs in an S3-compatible bucket (AWS S3, MinIO,
// versitygw, ...), for replicas that share storage and for downloads that
// go straight to object storage through presigned URLs.
//
// Uploads stream to a temporary key in multipart chunks while being
// hashed, then are copied server-side to objects/<sha256>, so the bucket
// never holds a partial blob under a real key and equal uploads dedupe.
package s3

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/flotilla-ota/flotilla/internal/blob"
)

// Config says where the bucket is.
type Config struct {
	Endpoint string // host:port
	Bucket   string
	Region   string
	Prefix   string // key prefix, e.g. "flotilla/"
	Insecure bool   // plain http
	// Credentials; empty means the standard AWS/MinIO environment
	// variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...).
	AccessKey, SecretKey string
	// CreateBucket makes the bucket if it does not exist.
	CreateBucket bool
	// PartSize is the multipart chunk (default 16 MiB): the memory an
	// upload of unknown length uses.
	PartSize uint64
}

// ParseURL reads s3://bucket/prefix?endpoint=host:port&region=r&insecure=true&create=true.
func ParseURL(raw string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return Config{}, fmt.Errorf("blob URL %q: use s3://BUCKET[/PREFIX]?endpoint=HOST:PORT[&region=R][&insecure=true][&create=true]", raw)
	}
	q := u.Query()
	c := Config{Bucket: u.Host, Prefix: strings.TrimPrefix(u.Path, "/"), Endpoint: q.Get("endpoint"), Region: q.Get("region"),
		Insecure: q.Get("insecure") == "true", CreateBucket: q.Get("create") == "true"}
	if c.Endpoint == "" {
		c.Endpoint = "s3.amazonaws.com"
	}
	if c.Prefix != "" && !strings.HasSuffix(c.Prefix, "/") {
		c.Prefix += "/"
	}
	return c, nil
}

// Store is a blob.Store on S3.
type Store struct {
	c   *minio.Client
	cfg Config
}

var (
	_ blob.Store     = (*Store)(nil)
	_ blob.Presigner = (*Store)(nil)
)

// Open connects and checks (or creates) the bucket.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	creds := credentials.NewChainCredentials([]credentials.Provider{&credentials.EnvAWS{}, &credentials.EnvMinio{}, &credentials.FileAWSCredentials{}})
	if cfg.AccessKey != "" {
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = 16 << 20
	}
	c, err := minio.New(cfg.Endpoint, &minio.Options{Creds: creds, Secure: !cfg.Insecure, Region: cfg.Region, BucketLookup: minio.BucketLookupPath})
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	s := &Store{c: c, cfg: cfg}
	ok, err := c.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("s3: bucket %s at %s: %w", cfg.Bucket, cfg.Endpoint, err)
	}
	if !ok {
		if !cfg.CreateBucket {
			return nil, fmt.Errorf("s3: bucket %s does not exist (add &create=true to create it)", cfg.Bucket)
		}
		if err := c.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region}); err != nil {
			return nil, fmt.Errorf("s3: create bucket %s: %w", cfg.Bucket, err)
		}
	}
	return s, nil
}

func (s *Store) key(sha string) string { return s.cfg.Prefix + "objects/" + sha[:2] + "/" + sha }

// Put implements blob.Store.
func (s *Store) Put(ctx context.Context, r io.Reader, opts blob.PutOptions) (blob.Info, error) {
	rnd := make([]byte, 12)
	rand.Read(rnd)
	tmp := s.cfg.Prefix + "tmp/" + hex.EncodeToString(rnd)
	h := sha256.New()
	size := int64(-1)
	if opts.SizeHint > 0 {
		size = opts.SizeHint
	}
	up, err := s.c.PutObject(ctx, s.cfg.Bucket, tmp, io.TeeReader(r, h), size, minio.PutObjectOptions{PartSize: s.cfg.PartSize, ContentType: "application/octet-stream"})
	cleanup := func() { s.c.RemoveObject(context.WithoutCancel(ctx), s.cfg.Bucket, tmp, minio.RemoveObjectOptions{}) }
	if err != nil {
		cleanup()
		return blob.Info{}, fmt.Errorf("s3 upload: %w", err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if opts.SHA256 != "" && opts.SHA256 != sum {
		cleanup()
		return blob.Info{}, blob.ErrChecksum
	}
	dst := s.key(sum)
	if _, err := s.c.StatObject(ctx, s.cfg.Bucket, dst, minio.StatObjectOptions{}); err != nil {
		_, err := s.c.ComposeObject(ctx, minio.CopyDestOptions{Bucket: s.cfg.Bucket, Object: dst}, minio.CopySrcOptions{Bucket: s.cfg.Bucket, Object: tmp})
		if err != nil {
			cleanup()
			return blob.Info{}, fmt.Errorf("s3 commit: %w", err)
		}
	}
	cleanup()
	return blob.Info{Key: sum, Size: up.Size, ModTime: time.Now()}, nil
}

func notFound(err error) bool {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		return er.StatusCode == http.StatusNotFound || er.Code == "NoSuchKey"
	}
	return false
}

// Stat implements blob.Store.
func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	if !blob.ValidKey(key) {
		return blob.Info{}, blob.ErrNotFound
	}
	oi, err := s.c.StatObject(ctx, s.cfg.Bucket, s.key(key), minio.StatObjectOptions{})
	if notFound(err) {
		return blob.Info{}, blob.ErrNotFound
	}
	if err != nil {
		return blob.Info{}, fmt.Errorf("s3 stat: %w", err)
	}
	return blob.Info{Key: key, Size: oi.Size, ModTime: oi.LastModified}, nil
}

// Open implements blob.Store. Reads are ranged GETs as the caller seeks.
func (s *Store) Open(ctx context.Context, key string) (blob.Object, error) {
	info, err := s.Stat(ctx, key)
	if err != nil {
		return nil, err
	}
	o, err := s.c.GetObject(ctx, s.cfg.Bucket, s.key(key), minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("s3 open: %w", err)
	}
	return &object{Object: o, info: info}, nil
}

type object struct {
	*minio.Object
	info blob.Info
}

func (o *object) Info() blob.Info { return o.info }

// Delete implements blob.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if !blob.ValidKey(key) {
		return nil
	}
	err := s.c.RemoveObject(ctx, s.cfg.Bucket, s.key(key), minio.RemoveObjectOptions{})
	if err != nil && !notFound(err) {
		return fmt.Errorf("s3 delete: %w", err)
	}
	return nil
}

// Ping implements blob.Store.
func (s *Store) Ping(ctx context.Context) error {
	ok, err := s.c.BucketExists(ctx, s.cfg.Bucket)
	if err != nil {
		return fmt.Errorf("s3 unreachable: %w", err)
	}
	if !ok {
		return fmt.Errorf("s3 bucket %s is gone", s.cfg.Bucket)
	}
	return nil
}

// PresignGet implements blob.Presigner.
func (s *Store) PresignGet(ctx context.Context, key string, ttl time.Duration, filename string) (string, error) {
	q := url.Values{}
	if filename != "" {
		q.Set("response-content-disposition", mime.FormatMediaType("attachment", map[string]string{"filename": filename}))
	}
	u, err := s.c.PresignedGetObject(ctx, s.cfg.Bucket, s.key(key), ttl, q)
	if err != nil {
		return "", fmt.Errorf("s3 presign: %w", err)
	}
	return u.String(), nil
}

// Count returns how many objects the bucket holds under the prefix, for
// tests that check nothing was left behind.
func (s *Store) Count(ctx context.Context) int {
	n := 0
	for range s.c.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: s.cfg.Prefix, Recursive: true}) {
		n++
	}
	return n
}
