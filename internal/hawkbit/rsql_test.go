package hawkbit

import (
	"strings"
	"testing"
)

func TestFilter(t *testing.T) {
	item := map[string][]string{
		"controllerid": {"dev-042"}, "name": {"Kiosk 42"}, "updatestatus": {"in_sync"},
		"attribute.hwrevision": {"2"}, "tag": {"eu", "kiosk"}, "createdat": {"1700000000000"},
	}
	get := func(f string) ([]string, bool) { v, ok := item[f]; return v, ok }
	known := func(f string) bool { return f != "color" }
	for _, tc := range []struct {
		q    string
		want bool
	}{
		{"", true},
		{"controllerId==dev-042", true},
		{"controllerId==dev*", true},
		{"controllerId==DEV-*", true},
		{"controllerId==pos*", false},
		{"controllerid!=dev-042", false},
		{"name=='Kiosk 42'", true},
		{`name=="Kiosk*"`, true},
		{"attribute.hwRevision==2", true},
		{"attribute.serial==2", false},
		{"attribute.serial!=2", true},
		{"tag==kiosk", true},
		{"tag=in=(us,eu)", true},
		{"tag=out=(us,eu)", false},
		{"updatestatus==in_sync;tag==eu", true},
		{"updatestatus==pending;tag==eu", false},
		{"updatestatus==pending,tag==eu", true},
		{"(updatestatus==pending,tag==eu);controllerId==dev*", true},
		{"updatestatus==pending and tag==eu", false},
		{"updatestatus==pending or tag==eu", true},
		{"createdat=gt=1600000000000", true},
		{"createdat<1600000000000", false},
		{"createdat>=1700000000000", true},
	} {
		f, err := ParseFilter(tc.q, known, "anything")
		if err != nil {
			t.Errorf("%q: %v", tc.q, err)
			continue
		}
		if got := f.Match(get); got != tc.want {
			t.Errorf("%q matched %v, want %v", tc.q, got, tc.want)
		}
	}
	for _, tc := range []struct{ q, want string }{
		{"color==red", `field "color" is not supported`},
		{"name==", "expected a value"},
		{"name=x", "expected an operator"},
		{"(name==x", "missing ')'"},
		{"name==x;", "expected a field name"},
		{"name==(a,b)", "needs =in= or =out="},
		{"name=='open", "unterminated"},
		{strings.Repeat("(", 100) + "name==x" + strings.Repeat(")", 100), "nested"},
	} {
		_, err := ParseFilter(tc.q, known, "anything")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one about %q", tc.q, err, tc.want)
		}
	}
}

func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"controllerId==dev*", "(a==1,b=in=(x,y));c!=z", "name=='a b'", "x=gt=5 and y<3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		flt, err := ParseFilter(q, func(string) bool { return true }, "")
		if err == nil {
			flt.Match(func(string) ([]string, bool) { return []string{"v"}, true })
		}
	})
}
