package server

import (
	"strings"
	"testing"
)

func TestParseAMQP(t *testing.T) {
	got, err := ParseAMQP([]string{"amqp://u:p@h:5672/v", "Acme=amqps://a:b@h/acme?queue=q1&exchange=x1&heartbeat=10"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "default" || got[0].Tenant != "" || got[0].URL != "amqp://u:p@h:5672/v" {
		t.Fatalf("first link %+v", got[0])
	}
	if c := got[1]; c.Name != "acme" || c.Tenant != "acme" || c.Queue != "q1" || c.Exchange != "x1" || c.URL != "amqps://a:b@h/acme?heartbeat=10" {
		t.Fatalf("second link %+v", c)
	}
	for _, bad := range [][]string{{"http://h/"}, {"amqp://"}, {"amqp://h/", "amqp://h2/"}, {"a=amqp://h/", "a=amqp://h2/"}} {
		_, err := ParseAMQP(bad)
		if err == nil || !strings.Contains(err.Error(), "AMQP URL") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if _, err := ParseAMQP([]string{"http://user:secret@h/"}); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("the error shows the password: %v", err)
	}
}
