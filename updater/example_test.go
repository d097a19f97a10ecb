package updater_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/updater"
)

// The examples talk to a real Flotilla server started here, which has
// artifact app 2.0.0 assigned to device kiosk-17.
var (
	exampleServer string
	exampleToken  string
	exampleDir    string
)

func TestMain(m *testing.M) {
	dir, _ := os.MkdirTemp("", "updater-example")
	s, err := servertest.New(filepath.Join(dir, "server"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	exampleServer, exampleDir = s.URL, dir
	admin := func(method, path string, body any) []byte {
		var r *bytes.Reader
		if b, ok := body.([]byte); ok {
			r = bytes.NewReader(b)
		} else {
			js, _ := json.Marshal(body)
			r = bytes.NewReader(js)
		}
		req, _ := http.NewRequest(method, s.URL+path, r)
		req.Header.Set("Authorization", "Bearer "+servertest.AdminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		return buf.Bytes()
	}
	admin("PUT", "/api/v1/artifacts/app/2.0.0?filename=app.bin", []byte("app version 2.0.0"))
	var dev struct{ Token string }
	json.Unmarshal(admin("POST", "/api/v1/devices", map[string]any{"id": "kiosk-17"}), &dev)
	exampleToken = dev.Token
	admin("POST", "/api/v1/devices/kiosk-17/deployments", map[string]any{"artifact": map[string]string{"name": "app", "version": "2.0.0"}})
	code := m.Run()
	s.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// installer is all a device has to write: where the new version goes.
type installer struct {
	updater.DefaultFetcher // downloads, resumes and verifies
	target                 string
}

func (i installer) Apply(ctx context.Context, u *updater.Update, p *updater.Payload) error {
	return os.Rename(p.Path, i.target)
}

// A device checks for an update, and the client downloads, verifies,
// installs and reports it.
func Example() {
	target := filepath.Join(exampleDir, "app.bin")
	c, err := updater.New(updater.Config{
		Server:         exampleServer,
		ControllerID:   "kiosk-17",
		Token:          exampleToken,
		CurrentVersion: "1.0.0",
		Handler:        installer{target: target},
		StateDir:       filepath.Join(exampleDir, "state"),
		Logger:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := c.CheckNow(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	b, _ := os.ReadFile(target)
	fmt.Println("running", c.Version())
	fmt.Println(string(b))
	// Output:
	// running 2.0.0
	// app version 2.0.0
}

// In production the client polls on its own: the first check 5-15 minutes
// after Start, then as often as the server says.
func ExampleClient_Start() {
	c, err := updater.New(updater.Config{
		Server:         exampleServer,
		ControllerID:   "kiosk-18",
		Token:          "device-token",
		CurrentVersion: "1.0.0",
		Handler:        installer{target: "/opt/app/app.bin"},
		FirstCheck:     updater.Interval{Min: time.Hour, Max: 2 * time.Hour},
		Logger:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.Start(ctx)
	// ... the device runs ...
	cancel()
	c.Stop()
	fmt.Println("stopped at", c.Version())
	// Output: stopped at 1.0.0
}

// SendEvent reports anything else about an update, such as why it waits.
func ExampleClient_SendEvent() {
	c, _ := updater.New(updater.Config{Server: exampleServer, ControllerID: "kiosk-19", Handler: installer{}, Logger: slog.New(slog.DiscardHandler)})
	err := c.SendEvent(context.Background(), updater.Event{Details: []string{"battery low; postponing install"}})
	fmt.Println(err)
	// Output: updater: no update in progress
}
