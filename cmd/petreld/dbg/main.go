package main

import (
	"context"
	"fmt"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

func main() {
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath("/usr/bin/chromium"), chromedp.NoSandbox)
	actx, c1 := chromedp.NewExecAllocator(context.Background(), opts...)
	defer c1()
	ctx, c2 := chromedp.NewContext(actx)
	defer c2()
	chromedp.ListenTarget(ctx, func(ev any) {
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			for _, a := range e.Args {
				fmt.Println("console:", string(a.Value), a.Description)
			}
		case *runtime.EventExceptionThrown:
			fmt.Println("exception:", e.ExceptionDetails.Error())
		}
	})
	var st, html string
	err := chromedp.Run(ctx, chromedp.Navigate("http://127.0.0.1:25252/ui/"), chromedp.WaitVisible("#login-email", chromedp.ByID),
		chromedp.SendKeys("#login-email", "o@shop.test", chromedp.ByID), chromedp.SendKeys("#login-password", "correct horse battery", chromedp.ByID),
		chromedp.Click("#login-submit", chromedp.ByID), chromedp.Sleep(4*time.Second),
		chromedp.Evaluate(`location.hash`, &st), chromedp.OuterHTML("main", &html))
	fmt.Println(err, st, html)
	var buf []byte
	err = chromedp.Run(ctx, emulation.SetDeviceMetricsOverride(390, 844, 2, false), chromedp.Sleep(150*time.Millisecond), chromedp.FullScreenshot(&buf, 80), emulation.ClearDeviceMetricsOverride(), chromedp.Evaluate(`location.hash`, &st))
	fmt.Println("after shot", err, st)
	err = chromedp.Run(ctx, chromedp.Evaluate(`location.hash="#/audiences/1"`, nil), chromedp.Sleep(3*time.Second), chromedp.OuterHTML("main", &html))
	fmt.Println(err, html)
}
