package disk_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/flotilla-ota/flotilla/internal/blob"
	"github.com/flotilla-ota/flotilla/internal/blob/blobtest"
	"github.com/flotilla-ota/flotilla/internal/blob/disk"
)

func TestConformance(t *testing.T) {
	dirs := map[blob.Store]string{}
	blobtest.Run(t, func(t *testing.T) blob.Store {
		dir := t.TempDir()
		s, err := disk.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		dirs[s] = dir
		return s
	}, func(t *testing.T, s blob.Store) int {
		n := 0
		filepath.WalkDir(dirs[s], func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return nil
		})
		return n
	})
}
