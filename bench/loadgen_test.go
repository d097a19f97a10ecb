package main

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The load generator counts exactly the answers it gets, whole.
func TestLoadOnceCountsEveryAnswer(t *testing.T) {
	addr, stop, err := plainServer(http.Header{"Content-Type": {"application/json"}}, []byte(`{"ok":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	var reqs [][]byte
	for i := 0; i < 500; i++ {
		reqs = append(reqs, getRequest(addr, "/x"))
	}
	r := loadOnce(addr, 8, reqs, 200)
	if r.Requests != 500 || r.Errors != 0 {
		t.Fatalf("sent 500, counted %+v", r)
	}
	r = load(addr, 4, 200*time.Millisecond, reqs, 404)
	if r.Requests != 0 || r.Errors == 0 || !strings.Contains(r.FirstError, "status 200") {
		t.Fatalf("a wrong status was not counted as an error: %+v", r)
	}
}

func TestReadResponse(t *testing.T) {
	in := "HTTP/1.1 200 OK\r\nContent-Type: x\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 304 Not Modified\r\nEtag: \"a\"\r\n\r\nHTTP/1.1 20"
	br := bufio.NewReader(strings.NewReader(in))
	for _, want := range []int{200, 304} {
		if got, err := readResponse(br); err != nil || got != want {
			t.Fatalf("readResponse = %d, %v; want %d", got, err, want)
		}
	}
	if _, err := readResponse(br); err == nil {
		t.Fatal("a truncated response parsed")
	}
}

// TestSimErrors reads the simulator's request errors from its last
// summary line or, once it stopped, from its final tally.
func TestSimErrors(t *testing.T) {
	summary := "    15s  devices 100 (registered 100, offline 0)  polls 460 (errors 7)  in flight 0\n"
	table := "\nsimulated fleet after 20s\n  polls                         500\n  poll errors                    9\n"
	for _, tc := range []struct {
		out  string
		want int
	}{{"", 0}, {summary, 7}, {summary + table, 9}, {table + summary, 7}} {
		if got := simErrors(tc.out); got != tc.want {
			t.Errorf("simErrors(%q) = %d, want %d", tc.out, got, tc.want)
		}
	}
}
