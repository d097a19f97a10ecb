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

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("browser: %s: %v", what, err)
		}
	}
	eval := func(js string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("browser: %s: %v", js, err)
		}
		return v
	}
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
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	out := filepath.Join(artifactsDir(t), "rollout-page.png")
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", out)
	// The same page at a phone's width.
	step("phone width", chromedp.EmulateViewport(390, 844), chromedp.WaitVisible("#devgrid"))
	phone, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("phone screenshot: %v", err)
	}
	os.WriteFile(filepath.Join(artifactsDir(t), "rollout-page-phone.png"), phone, 0o644)
	if overflow := eval(`String(document.documentElement.scrollWidth > window.innerWidth + 1)`); overflow != "false" {
		t.Fatalf("the rollout page scrolls sideways at phone width")
	}
	// The page shows every device green.
	if green := eval(`String(document.querySelectorAll('.dev.state-succeeded').length)`); green != "6" {
		t.Fatalf("%s of 6 devices green", green)
	}
}
