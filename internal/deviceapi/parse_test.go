package deviceapi_test

import (
	"testing"

	"github.com/flotilla-ota/flotilla/internal/deviceapi"
)

func TestParseFeedbackAcceptsOldClients(t *testing.T) {
	f, err := deviceapi.ParseFeedback([]byte(`{"id":"12","time":"20140511T121314","status":{"execution":"closed","result":{"finished":"success","progress":{"cnt":2,"of":5}},"details":["done"]}}`))
	if err != nil || f.Execution != "closed" || f.Finished != "success" || f.Cnt != 2 || f.Of != 5 || f.Details[0] != "done" {
		t.Fatalf("ParseFeedback = %+v, %v", f, err)
	}
	f, err = deviceapi.ParseFeedback([]byte(`{"id":12,"status":{"execution":"proceeding","code":7}}`))
	if err != nil || f.Code == nil || *f.Code != 7 {
		t.Fatalf("numeric id and code: %+v, %v", f, err)
	}
}

func FuzzParseFeedback(f *testing.F) {
	for _, s := range []string{
		`{"status":{"execution":"closed","result":{"finished":"success","progress":{"cnt":2,"of":5}},"details":["x"]}}`,
		`{"id":"1","time":"t","status":{"execution":"proceeding"}}`, `{}`, `[]`, `{"status":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fb, err := deviceapi.ParseFeedback(b)
		if err == nil && fb.Execution == "" {
			t.Fatal("accepted feedback without an execution")
		}
	})
}

func FuzzParseConfigData(f *testing.F) {
	for _, s := range []string{`{"mode":"merge","data":{"a":"b","n":1,"t":true}}`, `{"data":{}}`, `{"data":{"x":[1]}}`, `{"mode":"remove","data":{"a":""}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		mode, data, err := deviceapi.ParseConfigData(b)
		if err != nil {
			return
		}
		if data == nil {
			t.Fatal("nil data without error")
		}
		switch mode {
		case "", "merge", "replace", "remove":
		default:
			t.Fatalf("accepted mode %q", mode)
		}
	})
}
