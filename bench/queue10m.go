package bench

import (
	"context"
	"fmt"
	"time"
)

// queue10M queues Queue10MMessages messages of Queue10MRcpts recipients
// each (default 1,000,000 × 10 = 10M recipients) with delivery impossible
// (relay to a closed port), in Queue10MSteps equal steps, and reports at
// every checkpoint how the cost grows with the queue: recipients queued,
// injection rate and ack p99 of the step, petreld CPU per recipient of
// the step, RSS and data_dir disk use (one line per checkpoint). Then
// petreld restarts towards a live sink: ready, first delivery after
// process start, drain rate over DrainLimit (like queue_1m).
func (r *Runner) queue10M(ctx context.Context) []*Line {
	if r.Petreld == "" {
		return []*Line{skipped(ScenarioQueue10M, "no_petreld_binary")}
	}
	msgs, rcpts, steps := r.P.Queue10MMessages, max(r.P.Queue10MRcpts, 1), max(r.P.Queue10MSteps, 1)
	final := NewLine(ScenarioQueue10M).Set("messages", msgs).Set("rcpts_per_msg", rcpts).Set("recipients", msgs*rcpts)
	if msgs <= 0 {
		return []*Line{skipped(ScenarioQueue10M, "queue10m-msgs_is_0")}
	}
	dir, err := r.runDir("queue10m")
	if err != nil {
		return []*Line{final.Set("error", err.Error())}
	}
	defer removeAll(dir)
	closed, err := FreePort()
	if err != nil {
		return []*Line{final.Set("error", err.Error())}
	}
	g := NewCPUGroup(fmt.Sprintf("queue10m-%d", runSeq.Add(1)))
	defer g.Kill()
	p, err := StartPetreld(ctx, PetreldOptions{Binary: r.Petreld, Dir: dir, Relay: fmt.Sprintf("127.0.0.1:%d", closed), Logger: r.logger(), Group: g})
	if err != nil {
		return []*Line{final.Set("error", err.Error())}
	}
	var lines []*Line
	done := 0
	start := time.Now()
	for step := 1; step <= steps && ctx.Err() == nil; step++ {
		n := msgs * step / steps
		chunk := n - done
		if chunk <= 0 {
			continue
		}
		cpu0, _ := g.Usage()
		res, err := RunSMTP(ctx, SMTPLoad{Addr: p.SMTPAddr, Sessions: r.P.Sessions, Messages: chunk, Size: 512, Recipients: rcpts, RcptDomain: fmt.Sprintf("s%d.sink.test", step)})
		if err != nil || res.Accepted != int64(chunk) {
			_ = p.Stop()
			if err == nil {
				err = fmt.Errorf("step %d: %d of %d accepted (temp %d perm %d errors %d): %v", step, res.Accepted, chunk, res.TempFailed, res.PermFailed, res.Errors, res.FirstErr)
			}
			return append(lines, final.Set("error", err.Error()))
		}
		cpu1, _ := g.Usage()
		done = n
		lat := Summarize(res.Latencies)
		rss, hwm, _ := p.Memory()
		du, _ := DiskUsage(p.DataDir)
		l := NewLine(ScenarioQueue10M).Set("checkpoint", step).Set("recipients_queued", done*rcpts).Set("messages_queued", done)
		l.Set("step_inject_msgs_per_s", Rate(res.Accepted, res.Duration())).Set("step_inject_rcpts_per_s", Rate(res.Recipients, res.Duration())).Set("step_ack_p99", lat.P99)
		l.Set("step_cpu_us_per_rcpt", float64((cpu1-cpu0).Microseconds())/float64(max(res.Recipients, 1)))
		l.Set("rss_mb", float64(rss)/(1<<20)).Set("peak_rss_mb", float64(hwm)/(1<<20)).Set("disk_mb", float64(du)/(1<<20))
		l.Set("disk_bytes_per_rcpt", float64(du)/float64(max(done*rcpts, 1)))
		lines = append(lines, l)
		r.logger().Info("queue_10m checkpoint", "line", l.String())
	}
	_, hwm, _ := p.Memory()
	du, _ := DiskUsage(p.DataDir)
	final.Set("inject_s", time.Since(start).Seconds()).Set("peak_rss_mb", float64(hwm)/(1<<20)).Set("disk_mb", float64(du)/(1<<20))
	if err := p.Stop(); err != nil {
		final.Set("stop_error", err.Error())
	}
	return append(lines, r.restartDelivery(ctx, final, dir, int64(done)))
}
