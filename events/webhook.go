package events

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/queue"
)

// Webhook request headers.
const (
	// HeaderTimestamp is the Unix time (seconds) the request was signed.
	HeaderTimestamp = "X-Petrel-Timestamp"
	// HeaderSignature is "v1=" + hex(HMAC-SHA256(secret, timestamp + "." + body)).
	HeaderSignature = "X-Petrel-Signature"
	// HeaderSeq is the event's Seq, unique per event: receivers dedupe on it.
	HeaderSeq = "X-Petrel-Event-Seq"
)

// Sign returns the X-Petrel-Signature value of body signed at timestamp ts
// (Unix seconds, as sent in X-Petrel-Timestamp).
func Sign(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a signature made by Sign in constant time.
func Verify(secret []byte, ts string, body []byte, sig string) bool {
	return hmac.Equal([]byte(Sign(secret, ts, body)), []byte(sig))
}

// WebhookStats is one webhook's state, as served by GET /api/v1/webhooks.
type WebhookStats struct {
	Name           string    `json:"name"`
	URL            string    `json:"url"`
	Events         []string  `json:"events"`
	Delivered      int64     `json:"delivered"`
	FailedAttempts int64     `json:"failed_attempts"`
	LagSeconds     float64   `json:"lag_seconds"`
	LastError      string    `json:"last_error,omitempty"`
	LastErrorAt    time.Time `json:"last_error_at,omitzero"`
	LastDelivered  time.Time `json:"last_delivered_at,omitzero"`
	Cursor         string    `json:"cursor,omitempty"`
}

// webhook is one [[webhooks]] dispatcher.
type webhook struct {
	s      *Service
	cfg    config.Webhook
	name   string
	cursor string
	types  map[string]bool
	client *http.Client
	wake   chan struct{}
	since  time.Time

	mu      sync.Mutex
	st      WebhookStats
	pending time.Time // time of the oldest event not yet delivered
}

func newWebhook(s *Service, i int, c config.Webhook) (*webhook, error) {
	u, err := url.Parse(c.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("events: webhooks[%d]: bad url %q", i, c.URL)
	}
	name := c.Name
	if name == "" {
		name = u.Host
	}
	for _, h := range s.hooks {
		if h.name == name {
			name = fmt.Sprintf("%s-%d", name, i)
		}
	}
	if c.Timeout.Duration <= 0 {
		c.Timeout.Duration = config.DefaultWebhookTimeout
	}
	if c.MaxBackoff.Duration <= 0 {
		c.MaxBackoff.Duration = config.DefaultWebhookMaxBackoff
	}
	sum := sha256.Sum256([]byte(c.URL))
	cursor := "webhook:" + hex.EncodeToString(sum[:8])
	since, err := s.st.firstSeen(cursor, s.now())
	if err != nil {
		return nil, err
	}
	h := &webhook{s: s, cfg: c, name: name, cursor: cursor,
		types: map[string]bool{}, wake: make(chan struct{}, 1), since: since,
		client: s.o.Client}
	if h.client == nil {
		h.client = &http.Client{Timeout: c.Timeout.Duration}
	}
	for _, t := range c.Events {
		h.types[t] = true
	}
	h.st = WebhookStats{Name: name, URL: c.URL, Events: append([]string{}, c.Events...)}
	return h, nil
}

func (h *webhook) lagGauge() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "petrel_webhook_lag_seconds",
		Help:        "Age of the oldest event not yet delivered to a webhook (0 when caught up).",
		ConstLabels: prometheus.Labels{"webhook": h.name}}, h.lag)
}

func (h *webhook) lag() float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pending.IsZero() {
		return 0
	}
	return max(h.s.now().Sub(h.pending).Seconds(), 0)
}

func (h *webhook) stats() WebhookStats {
	lag := h.lag()
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.st
	st.LagSeconds = lag
	return st
}

// run dispatches events until ctx ends. A webhook starts with the events
// recorded from when it was first configured (kept in the store, so a
// restart before its first delivery loses nothing).
func (h *webhook) run(ctx context.Context) {
	h.s.tail(ctx, h.cursor, h.wake, h.since, h.cfg.Events, h.page)
}

// page posts the events of one page in order, each retried until 2xx; it
// stores the cursor before each backoff so an outage loses no progress.
func (h *webhook) page(ctx context.Context, evs []queue.Event) (int, error) {
	for i, ev := range evs {
		if len(h.types) > 0 && !h.types[ev.Type] {
			continue
		}
		h.mu.Lock()
		h.pending = ev.Time
		h.mu.Unlock()
		backoff := h.s.o.RetryBase
		saved := false
		for {
			err := h.post(ctx, ev)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return i, ctx.Err()
			}
			h.s.m.whFailed.WithLabelValues(h.name).Inc()
			h.mu.Lock()
			h.st.FailedAttempts++
			h.st.LastError, h.st.LastErrorAt = err.Error(), h.s.now().UTC()
			h.mu.Unlock()
			h.s.log.Warn("webhook delivery failed; retrying", "webhook", h.name, "seq", ev.Seq, "type", ev.Type,
				"retry_in", backoff, "err", err)
			if !saved && i > 0 {
				if err := h.s.o.Queue.SetCursor(h.cursor, evs[i-1].Seq); err != nil {
					h.s.log.Error("store webhook cursor", "webhook", h.name, "err", err)
				}
				saved = true
			}
			select {
			case <-ctx.Done():
				return i, ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, h.cfg.MaxBackoff.Duration)
		}
		h.s.m.whDelivered.WithLabelValues(h.name).Inc()
		h.mu.Lock()
		h.st.Delivered++
		h.st.LastDelivered = h.s.now().UTC()
		h.st.Cursor = ev.Seq
		h.mu.Unlock()
	}
	h.mu.Lock()
	h.pending = time.Time{}
	h.st.Cursor = evs[len(evs)-1].Seq
	h.mu.Unlock()
	return len(evs), nil
}

// post sends one event; any status outside 2xx is an error.
func (h *webhook) post(ctx context.Context, ev queue.Event) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	ts := strconv.FormatInt(h.s.now().Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "petrel-webhook/1")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign([]byte(h.cfg.Secret), ts, body))
	req.Header.Set(HeaderSeq, ev.Seq)
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("post: %s answered %s", h.cfg.URL, resp.Status)
	}
	return nil
}

// Webhooks returns the state of every webhook.
func (s *Service) Webhooks() []WebhookStats {
	out := make([]WebhookStats, 0, len(s.hooks))
	for _, h := range s.hooks {
		out = append(out, h.stats())
	}
	return out
}
