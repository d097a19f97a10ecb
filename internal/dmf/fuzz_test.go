package dmf

import (
	"errors"
	"testing"
)

// FuzzParseStatus: any body a gateway sends is either a status with an
// action and a known outcome, or a bad message with a reason — never a
// panic, never something in between.
func FuzzParseStatus(f *testing.F) {
	for _, seed := range []string{
		`{"actionId":1,"actionStatus":"FINISHED","message":["done"]}`,
		`{"actionId":7,"softwareModuleId":3,"actionStatus":"DOWNLOADED"}`,
		`{"actionId":2,"actionStatus":"CANCEL_REJECTED","message":["too late"],"code":3}`,
		`{"actionId":0,"actionStatus":"RUNNING"}`,
		`{"actionId":"x"}`, `[]`, `null`, ``, `{"actionId":1,"actionStatus":"EXPLODED"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		s, fb, _, err := parseStatus(body)
		if err != nil {
			var b *badMessage
			if !errors.As(err, &b) || b.reason == "" {
				t.Fatalf("%q: an error that is not a bad message with a reason: %v", body, err)
			}
			return
		}
		if s.ActionID <= 0 || fb.Execution == "" || len(fb.Details) == 0 {
			t.Fatalf("%q: accepted as %+v / %+v", body, s, fb)
		}
	})
}
