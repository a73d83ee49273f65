package tracking

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/chromedp"

	"github.com/petrel-mta/petrel/audience"
	"github.com/petrel-mta/petrel/internal/testnet"
)

// chromium starts headless Chromium (/usr/bin/chromium or
// PETREL_CHROMIUM) sending acceptLang; SkipOrFail without it.
func chromium(t *testing.T, acceptLang string) context.Context {
	t.Helper()
	path := os.Getenv("PETREL_CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := exec.LookPath(path); err != nil {
		testnet.SkipOrFail(t, "no Chromium at %s: %v", path, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Flag("lang", acceptLang), chromedp.Flag("accept-lang", acceptLang),
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// axNode is the part of an accessibility node the test reads.
type axNode struct{ role, name string }

// axTree reads the page's accessibility tree through the raw DevTools
// command (cdproto's typed result rejects property names newer than it).
func axTree(ctx context.Context) ([]axNode, error) {
	var res struct {
		Nodes []struct {
			Ignored bool `json:"ignored"`
			Role    *struct {
				Value string `json:"value"`
			} `json:"role"`
			Name *struct {
				Value string `json:"value"`
			} `json:"name"`
		} `json:"nodes"`
	}
	err := chromedp.Run(ctx, chromedp.ActionFunc(func(ctx context.Context) error {
		return cdp.Execute(ctx, accessibility.CommandGetFullAXTree, nil, &res)
	}))
	var out []axNode
	for _, n := range res.Nodes {
		if n.Ignored || n.Role == nil {
			continue
		}
		var name string
		if n.Name != nil {
			name = strings.TrimSpace(n.Name.Value)
		}
		out = append(out, axNode{n.Role.Value, name})
	}
	return out, err
}

// TestPreferenceCentreInChromium: a real browser (headless Chromium with
// a Traditional Chinese locale) gets the page in zh-Hant; its
// accessibility tree names each list's checkbox by its label and both
// buttons by their text, and the status is announced; unchecking a list
// by clicking its label and saving unsubscribes that contact only (the
// browser's same-origin POST passes the cross-origin check).
func TestPreferenceCentreInChromium(t *testing.T) {
	e := newPrefsEnv(t, "sqlite")
	news, offers := e.contact("news", "ann@example.test"), e.contact("offers", "ann@example.test")
	ctx := chromium(t, "zh-TW")
	url := e.srv.URL + "/preferences/" + e.tokens.Make("marketing", "ann@example.test")
	var lang, title string
	if err := chromedp.Run(ctx, chromedp.Navigate(url), chromedp.WaitVisible(`input[name=keep]`, chromedp.ByQuery),
		chromedp.Evaluate(`document.documentElement.lang`, &lang), chromedp.Title(&title)); err != nil {
		t.Fatal(err)
	}
	if lang != "zh-Hant" || title != "電子郵件偏好設定" {
		t.Fatalf("lang %q, title %q", lang, title)
	}
	tree, err := axTree(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[axNode]bool{{"checkbox", "news"}: false, {"checkbox", "offers"}: false, {"button", "儲存設定"}: false,
		{"button", "取消所有訂閱"}: false, {"heading", "電子郵件偏好設定"}: false}
	for _, n := range tree {
		if _, ok := want[n]; ok {
			want[n] = true
		}
	}
	for n, seen := range want {
		if !seen {
			t.Errorf("accessibility tree has no %s named %q", n.role, n.name)
		}
	}
	var status string
	if err := chromedp.Run(ctx,
		chromedp.Click(`//label[normalize-space(.)="news"]`, chromedp.BySearch),
		chromedp.Click(`button[value=save]`, chromedp.ByQuery),
		chromedp.WaitVisible(`[role=status]`, chromedp.ByQuery),
		chromedp.Text(`[role=status]`, &status, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	if status != "您的設定已儲存。" {
		t.Fatalf("status %q", status)
	}
	if e.status("news", news.ID) != audience.Unsubscribed || e.status("offers", offers.ID) != audience.Active || e.suppressed("marketing", "ann@example.test") {
		t.Fatalf("after the browser's save: news %s, offers %s", e.status("news", news.ID), e.status("offers", offers.ID))
	}
}
