package s3_test

import (
	"testing"

	"github.com/flotilla-ota/flotilla/internal/blob"
	"github.com/flotilla-ota/flotilla/internal/blob/blobtest"
	"github.com/flotilla-ota/flotilla/internal/blob/s3"
	"github.com/flotilla-ota/flotilla/internal/blob/s3/s3test"
)

// TestConformance runs the blob suite against a real S3-compatible server.
func TestConformance(t *testing.T) {
	srv := s3test.Start(t)
	n := 0
	blobtest.Run(t, func(t *testing.T) blob.Store {
		// Each subtest gets its own prefix in the bucket.
		n++
		cfg := srv.Config()
		cfg.Prefix = "t" + string(rune('a'+n)) + "/"
		st, err := s3.Open(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}, func(t *testing.T, s blob.Store) int {
		return s.(*s3.Store).Count(t.Context())
	})
}

func TestParseURL(t *testing.T) {
	c, err := s3.ParseURL("s3://fw-bucket/prod?endpoint=minio.local:9000&insecure=true&region=eu-west-1")
	if err != nil || c.Bucket != "fw-bucket" || c.Prefix != "prod/" || c.Endpoint != "minio.local:9000" || !c.Insecure || c.Region != "eu-west-1" {
		t.Fatalf("ParseURL = %+v, %v", c, err)
	}
	for _, bad := range []string{"http://x", "s3://", "s3:bucket"} {
		if _, err := s3.ParseURL(bad); err == nil {
			t.Errorf("ParseURL(%q) succeeded", bad)
		}
	}
}
