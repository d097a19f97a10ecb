package ui_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/internal/testtool"
	"github.com/flotilla-ota/flotilla/updater"
)

type nopInstaller struct{ updater.DefaultFetcher }

func (nopInstaller) Apply(context.Context, *updater.Update, *updater.Payload) error { return nil }

// artifactsDir is where tests leave screenshots for people to look at.
func artifactsDir(t *testing.T) string {
	dir := os.Getenv("FLOTILLA_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "test-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser is one headless Chromium for a test, with helpers that fail it.
type browser struct {
	t   *testing.T
	ctx context.Context
}

func newBrowser(t *testing.T, exe string) *browser {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	return &browser{t: t, ctx: ctx}
}

func (b *browser) step(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("browser: %s: %v", what, err)
	}
}

func (b *browser) eval(js string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](js))
	if err != nil {
		b.t.Fatalf("browser: %s: %v", js, err)
	}
	return v
}

// screenshot saves the whole page under name in the artifacts directory.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	out := filepath.Join(artifactsDir(b.t), name)
	if err := os.WriteFile(out, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", out)
}

func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testtool.Missing(t, "no Chromium installed: apt-get install chromium (.ci/run does)")
	return ""
}

// TestUIRolloutInChromium drives the UI in headless Chromium: sign in,
// upload an artifact, create and start a rollout through the form, and see
// a device turn green without a reload.
func TestUIRolloutInChromium(t *testing.T) {
	exe := chromium(t)
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.SchedulerTick = 100 * time.Millisecond }))
	for i := 0; i < 6; i++ {
		id := fmt.Sprintf("kiosk-%d", i)
		tok := s.API.CreateDevice(id, map[string]string{"fleet": "ui"})
		s.StartDevice(t, updater.Config{ControllerID: id, Token: tok, CurrentVersion: "1.0.0", Handler: nopInstaller{}, ActiveInterval: 200 * time.Millisecond})
	}
	firmware := filepath.Join(t.TempDir(), "kiosk.bin")
	os.WriteFile(firmware, []byte(strings.Repeat("firmware 2.0.0\n", 4000)), 0o644)

	b := newBrowser(t, exe)
	step, eval := b.step, b.eval
	step("sign in", chromedp.Navigate(s.URL+"/"), chromedp.WaitVisible("#token"),
		chromedp.SendKeys("#token", servertest.AdminToken), chromedp.Click("#login"), chromedp.WaitVisible("#fleet-total"))
	if total := eval(`document.querySelector('#fleet-total').textContent`); total != "6" {
		t.Fatalf("dashboard showed %q devices", total)
	}
	step("upload an artifact", chromedp.Navigate(s.URL+"/#/artifacts"), chromedp.WaitVisible("#upload"),
		chromedp.SetUploadFiles("#file", []string{firmware}), chromedp.SendKeys("#art-name", "kiosk-fw"),
		chromedp.SendKeys("#art-version", "2.0.0"), chromedp.Click("#upload-btn"), chromedp.WaitVisible(`tr[data-artifact="kiosk-fw/2.0.0"]`))
	step("create and start a rollout", chromedp.Navigate(s.URL+"/#/rollouts/new"), chromedp.WaitVisible("#rollout-form"),
		chromedp.SendKeys("#ro-name", "spring kiosks"), chromedp.SetValue("#ro-waves", "2"), chromedp.SendKeys("#ro-selector", "fleet=ui"),
		chromedp.WaitVisible("#preview-total"), chromedp.Click("#ro-create"), chromedp.WaitVisible("#devgrid"))
	pageID := eval(`window.__flotillaPage`)
	step("a device turns green", chromedp.WaitVisible(`.dev.state-succeeded`))
	if after := eval(`window.__flotillaPage`); pageID == "" || after != pageID {
		t.Fatal("the page reloaded while waiting for the device to turn green")
	}
	step("the rollout completes", chromedp.WaitVisible(`#ro-status .status-completed`))
	b.screenshot("rollout-page.png")
	// The same page at a phone's width.
	step("phone width", chromedp.EmulateViewport(390, 844), chromedp.WaitVisible("#devgrid"))
	b.screenshot("rollout-page-phone.png")
	if overflow := eval(`String(document.documentElement.scrollWidth > window.innerWidth + 1)`); overflow != "false" {
		t.Fatalf("the rollout page scrolls sideways at phone width")
	}
	// The page shows every device green.
	if green := eval(`String(document.querySelectorAll('.dev.state-succeeded').length)`); green != "6" {
		t.Fatalf("%s of 6 devices green", green)
	}
}

type failInstaller struct{ updater.DefaultFetcher }

func (failInstaller) Apply(context.Context, *updater.Update, *updater.Payload) error {
	return fmt.Errorf("disk /dev/mmcblk0p2 is read-only")
}

// TestUIFailuresAndDeviceListInChromium covers what an operator does when
// something goes wrong and when the fleet is large: the sign-in page shows
// no navigation; a failed device is listed with its message and links to
// its page; the devices page pages, sorts and searches on the server; a bad
// selector is explained next to the field; and after the server restarts
// the page reconnects and refreshes by itself.
func TestUIFailuresAndDeviceListInChromium(t *testing.T) {
	exe := chromium(t)
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.SchedulerTick = 100 * time.Millisecond }))
	for i := 0; i < 2; i++ {
		id := fmt.Sprintf("till-%d", i)
		tok := s.API.CreateDevice(id, map[string]string{"fleet": "pos"})
		var h updater.Handler = nopInstaller{}
		if i == 1 {
			h = failInstaller{}
		}
		s.StartDevice(t, updater.Config{ControllerID: id, Token: tok, CurrentVersion: "1.0.0", Handler: h, ActiveInterval: 200 * time.Millisecond})
	}
	for i := 0; i < 118; i++ {
		s.API.CreateDevice(fmt.Sprintf("dev-%03d", i), map[string]string{"fleet": "bulk"})
	}
	s.API.Upload("pos-fw", "2.0.0", []byte(strings.Repeat("pos firmware\n", 100)), "")
	var ro struct{ ID string }
	s.API.Must(201, "POST", "/api/v1/rollouts", map[string]any{"name": "tills", "artifact": map[string]string{"name": "pos-fw", "version": "2.0.0"},
		"selector": "fleet=pos", "start": true, "policy": map[string]any{"min_success_ratio": 0.1}}, &ro)

	b := newBrowser(t, exe)
	step, eval := b.step, b.eval
	step("open the sign-in page", chromedp.Navigate(s.URL+"/"), chromedp.WaitVisible("#token"))
	if shown := eval(`String(document.querySelector('nav').offsetParent !== null)`); shown != "false" {
		t.Fatal("the sign-in page shows the navigation of a signed-in user")
	}
	step("sign in", chromedp.SendKeys("#token", servertest.AdminToken), chromedp.Click("#login"), chromedp.WaitVisible("#fleet-total"))
	if shown := eval(`String(document.querySelector('nav').offsetParent !== null)`); shown != "true" {
		t.Fatal("no navigation after signing in")
	}

	// The failed device is listed with what it said, and its link leads to it.
	step("open the rollout", chromedp.Navigate(s.URL+"/#/rollouts/"+ro.ID), chromedp.WaitVisible(`tr[data-failed="till-1"]`))
	if msg := eval(`document.querySelector('tr[data-failed="till-1"] .msg').textContent`); !strings.Contains(msg, "read-only") {
		t.Fatalf("the failed device's row says %q, not its error", msg)
	}
	// The chips are drawn from the rollout's devices, fetched apart from
	// the failures list: wait for them too.
	step("the failed device's chip", chromedp.WaitVisible(`.dev.state-failed`))
	if red := eval(`String(document.querySelectorAll('.dev.state-failed').length)`); red != "1" {
		t.Fatalf("%s red chips, want 1", red)
	}
	b.screenshot("rollout-failed.png")
	step("follow the failed device", chromedp.Click(`tr[data-failed="till-1"] a`), chromedp.WaitVisible(`#device-page`))
	if !strings.Contains(eval(`location.hash`), "till-1") {
		t.Fatalf("the link led to %s", eval(`location.hash`))
	}

	// 120 devices: pages of 50, sorted and searched by the server.
	rows := func() string {
		return eval(`[...document.querySelectorAll('#devices tbody tr[data-device]')].map(r => r.dataset.device).join(' ')`)
	}
	step("open the devices page", chromedp.Navigate(s.URL+"/#/devices"), chromedp.WaitVisible(`tr[data-device="dev-000"]`))
	if got := strings.Fields(rows()); len(got) != 50 || got[0] != "dev-000" {
		t.Fatalf("first page: %d rows starting %v", len(got), got[:min(1, len(got))])
	}
	step("next page", chromedp.Click("#next"), chromedp.WaitVisible(`tr[data-device="dev-050"]`))
	step("previous page", chromedp.Click("#prev"), chromedp.WaitVisible(`tr[data-device="dev-000"]`))
	step("sort by id, descending", chromedp.Click("#sort-id"), chromedp.WaitVisible(`tr[data-device="till-1"]`))
	if got := strings.Fields(rows()); got[0] != "till-1" || got[2] != "dev-117" {
		t.Fatalf("descending order starts %v", got[:3])
	}
	step("search by id prefix", chromedp.SetValue("#prefix", "dev-11"), chromedp.Click("#search"),
		chromedp.WaitNotPresent(`tr[data-device="till-1"]`), chromedp.WaitVisible(`tr[data-device="dev-110"]`))
	if got := strings.Fields(rows()); len(got) != 8 {
		t.Fatalf("prefix dev-11 showed %d devices, want 8: %v", len(got), got)
	}
	b.screenshot("devices-page.png")
	// The page redraws after each search; fill the new form in one go.
	eval(`document.querySelector('#prefix').value = ''; document.querySelector('#selector').value = 'fleet in (pos'; document.querySelector('#search').click(); ''`)
	step("a bad selector", chromedp.WaitVisible("#selector-error"))
	if msg := eval(`document.querySelector('#selector-error').textContent`); msg == "" {
		t.Fatal("the selector error is empty")
	}
	if toast := eval(`String(!document.querySelector('#toast').hidden)`); toast != "false" {
		t.Fatal("a bad selector also raised a toast")
	}

	// The server restarts on the same address; the page notices and redraws.
	step("watch the rollout", chromedp.Navigate(s.URL+"/#/rollouts/"+ro.ID), chromedp.WaitVisible("#live.on"))
	addr := strings.TrimPrefix(s.URL, "http://")
	s.Stop()
	step("the page sees the server go", chromedp.WaitNotPresent("#live.on"))
	s2, err := servertest.New(s.DataDir, servertest.WithConfig(func(c *server.Config) { c.Listen = addr }))
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	t.Cleanup(s2.Stop)
	step("the page reconnects", chromedp.WaitVisible("#live.on"))
	servertest.Eventually(t, 10*time.Second, func() error {
		if msg := eval(`document.querySelector('#toast').hidden ? '' : document.querySelector('#toast').textContent`); !strings.Contains(msg, "Reconnected") {
			return fmt.Errorf("after the restart the page says %q", msg)
		}
		return nil
	})
}
