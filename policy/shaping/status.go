package shaping

import (
	"sort"
	"time"

	"github.com/petrel-mta/petrel/config"
)

// Status is a snapshot of the shaper for `petrelctl policy status`
// (served as JSON at GET /api/v1/policy/status).
type Status struct {
	Time time.Time `json:"time"`
	// Limits has one entry per shaping state in use.
	Limits []LimitStatus `json:"limits"`
	// Actions lists the automation actions in force.
	Actions []ActionStatus `json:"actions"`
	// Warmup lists today's warm-up counts against their caps.
	Warmup []WarmupStatus `json:"warmup"`
	// Paused lists the streams stopped by PauseStream.
	Paused []PausedStream `json:"paused"`
}

// LimitStatus is the effective limits of one (stream, source, rule key).
type LimitStatus struct {
	Stream string `json:"stream"`
	Source string `json:"source"`
	Rule   string `json:"rule"`
	// Key is the rule name, or "default:<domain>".
	Key                        string      `json:"key"`
	ConnectionLimit            int         `json:"connection_limit"`
	ActiveConnections          int         `json:"active_connections"`
	MaxDeliveriesPerConnection int         `json:"max_deliveries_per_connection"`
	MaxMessageRate             config.Rate `json:"max_message_rate"`
	MaxConnectionRate          config.Rate `json:"max_connection_rate"`
	// ThrottleFactor is the active throttle (0 when none).
	ThrottleFactor float64 `json:"throttle_factor,omitempty"`
	Suspended      bool    `json:"suspended,omitempty"`
	Bouncing       bool    `json:"bouncing,omitempty"`
}

// ActionStatus is one active automation action.
type ActionStatus struct {
	Action string    `json:"action"`
	Stream string    `json:"stream"`
	Source string    `json:"source"`
	Key    string    `json:"key"`
	Factor float64   `json:"factor,omitempty"`
	Until  time.Time `json:"until"`
	// Reply is the remote reply that started or last extended it.
	Reply string `json:"reply"`
}

// WarmupStatus is one source's count today for one rule.
type WarmupStatus struct {
	Source string    `json:"source"`
	Rule   string    `json:"rule"`
	Day    time.Time `json:"day"`
	Sent   int       `json:"sent"`
	Cap    int       `json:"cap"`
}

// Status returns the current effective limits, active actions and warm-up
// counts, sorted for stable output.
func (s *Shaper) Status() Status {
	now := time.Now()
	st := Status{Time: now.UTC(), Limits: []LimitStatus{}, Actions: []ActionStatus{}, Warmup: []WarmupStatus{}, Paused: []PausedStream{}}
	for name, reason := range *s.paused.Load() {
		st.Paused = append(st.Paused, PausedStream{Stream: name, Reason: reason})
	}
	sort.Slice(st.Paused, func(i, j int) bool { return st.Paused[i].Stream < st.Paused[j].Stream })
	s.mu.RLock()
	bs := make([]*bucket, 0, len(s.buckets))
	for _, b := range s.buckets {
		bs = append(bs, b)
	}
	s.mu.RUnlock()
	for _, b := range bs {
		b.mu.Lock()
		r := b.rule.Load()
		msg, conn, factor := b.effectiveLocked()
		ls := LimitStatus{
			Stream: b.key.stream, Source: b.key.source, Rule: r.cfg.Name, Key: b.key.key,
			ConnectionLimit:            r.cfg.ConnectionLimit,
			MaxDeliveriesPerConnection: r.cfg.MaxDeliveriesPerConnection,
			MaxMessageRate:             roundRate(msg),
			MaxConnectionRate:          roundRate(conn),
			ThrottleFactor:             factor,
			Suspended:                  b.suspend.until.After(now),
			Bouncing:                   b.bounce.until.After(now),
		}
		for _, a := range []struct {
			name string
			st   actionState
		}{{config.ActionThrottle, b.throttle}, {config.ActionSuspend, b.suspend}, {config.ActionBounce, b.bounce}} {
			if a.st.until.After(now) {
				st.Actions = append(st.Actions, ActionStatus{Action: a.name, Stream: b.key.stream, Source: b.key.source,
					Key: b.key.key, Factor: a.st.factor, Until: a.st.until.UTC(), Reply: a.st.reason})
			}
		}
		b.mu.Unlock()
		ls.ActiveConnections = b.sem.inUse()
		st.Limits = append(st.Limits, ls)
	}
	rs := s.rs.Load()
	s.warmMu.Lock()
	for k, c := range s.warm {
		limit, dayEnd, capped := rs.sources[k.source].warmCap(k.rule, now)
		if !capped || !c.day.Equal(dayEnd.Add(-24*time.Hour)) {
			continue
		}
		st.Warmup = append(st.Warmup, WarmupStatus{Source: k.source, Rule: k.rule, Day: c.day, Sent: c.n, Cap: limit})
	}
	s.warmMu.Unlock()
	sort.Slice(st.Limits, func(i, j int) bool {
		return lessKey(st.Limits[i].Stream, st.Limits[i].Source, st.Limits[i].Key, st.Limits[j].Stream, st.Limits[j].Source, st.Limits[j].Key)
	})
	sort.Slice(st.Actions, func(i, j int) bool {
		a, b := st.Actions[i], st.Actions[j]
		if a.Key != b.Key || a.Stream != b.Stream || a.Source != b.Source {
			return lessKey(a.Stream, a.Source, a.Key, b.Stream, b.Source, b.Key)
		}
		return a.Action < b.Action
	})
	sort.Slice(st.Warmup, func(i, j int) bool {
		a, b := st.Warmup[i], st.Warmup[j]
		return a.Source < b.Source || a.Source == b.Source && a.Rule < b.Rule
	})
	return st
}

func lessKey(s1, src1, k1, s2, src2, k2 string) bool {
	if s1 != s2 {
		return s1 < s2
	}
	if src1 != src2 {
		return src1 < src2
	}
	return k1 < k2
}
