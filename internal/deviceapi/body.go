package deviceapi

import (
	"io"
	"net/http"

	"github.com/flotilla-ota/flotilla"
)

func readLimited(r *http.Request, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		return nil, flotilla.Errorf(flotilla.EInvalid, "reading request body: %v", err)
	}
	if int64(len(b)) > max {
		return nil, flotilla.Errorf(flotilla.ETooLarge, "request body exceeds %d bytes", max)
	}
	return b, nil
}
