package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	sdnotify "github.com/coreos/go-systemd/v22/daemon"
)

// notifySystemd implements systemd's Type=notify readiness protocol
// (sd_notify(3), datagrams to $NOTIFY_SOCKET; dist/petreld.service):
// READY=1 now (start has returned, so every listener accepts), then
// RELOADING=1 (with MONOTONIC_USEC) followed by READY=1 on each SIGHUP,
// and STOPPING=1 once ctx ends (SIGTERM/SIGINT: graceful shutdown
// begins). Without NOTIFY_SOCKET (not run by systemd) it does nothing.
//
// The SIGHUP reload itself runs in main's loop; it only swaps shaping
// rules in memory, so READY=1 follows RELOADING=1 at once.
func notifySystemd(ctx context.Context, log *slog.Logger) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return
	}
	send := func(state string) {
		if _, err := sdnotify.SdNotify(false, state); err != nil {
			log.Warn("systemd notification failed", "state", state, "err", err)
		}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	send(sdnotify.SdNotifyReady + "\nSTATUS=accepting mail")
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-hup:
				send(sdnotify.SdNotifyReloading + "\n" + sdnotify.SdNotifyMonotonicUsec() + "STATUS=reloading shaping rules")
				send(sdnotify.SdNotifyReady + "\nSTATUS=accepting mail")
			case <-ctx.Done():
				send(sdnotify.SdNotifyStopping + "\nSTATUS=shutting down")
				return
			}
		}
	}()
}
