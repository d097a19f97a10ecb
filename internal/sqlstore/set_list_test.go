package sqlstore

import (
	"fmt"
	"testing"
)

// TestSetListNamesOnlyChangedIndexedColumns: an indexed column is named
// only when its value (as written) changes; the others always are.
func TestSetListNamesOnlyChangedIndexedColumns(t *testing.T) {
	var l setList
	l.set("message", "m")
	l.changed("state", "pending", "pending")
	l.changed("retrieved_at", nil, nil)
	l.changed("healthy", nil, 1)
	l.changed("version", "1.0", "2.0")
	l.changed("started_at", int64(5), int64(5))
	l.changed("token_hash", "h", nil)
	if got, want := l.String(), "message = ?, healthy = ?, version = ?, token_hash = ?"; got != want {
		t.Fatalf("SET %s, want %s", got, want)
	}
	if got := fmt.Sprint(l.args); got != "[m 1 2.0 <nil>]" {
		t.Fatalf("args %s", got)
	}
}
