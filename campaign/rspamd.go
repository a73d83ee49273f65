package campaign

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"
)

// SpamResult is a content filter's verdict on a rendered message.
type SpamResult struct {
	// Filter names the filter ("rspamd").
	Filter string  `json:"filter"`
	Score  float64 `json:"score"`
	// Threshold is the score above which the check blocks the send.
	Threshold float64 `json:"threshold"`
	// Action is the filter's own recommendation ("no action", "add
	// header", "reject", ...).
	Action string `json:"action,omitempty"`
	// Symbols are the rules that hit, highest score first.
	Symbols []SpamSymbol `json:"symbols,omitempty"`
}

// SpamSymbol is one rule hit.
type SpamSymbol struct {
	Name        string   `json:"name"`
	Score       float64  `json:"score"`
	Description string   `json:"description,omitempty"`
	Options     []string `json:"options,omitempty"`
}

// ContentFilter scores a message (rspamd's /checkv2 is the one Petrel
// ships; SpamAssassin's spamd would be another).
type ContentFilter interface {
	Score(ctx context.Context, msg []byte, env FilterEnvelope) (SpamResult, error)
}

// FilterEnvelope is what the filter is told besides the message.
type FilterEnvelope struct {
	From, Rcpt, Hostname string
}

// Rspamd asks an rspamd normal worker (or the controller, which serves
// the same endpoint) over HTTP: POST <URL>/checkv2.
type Rspamd struct {
	// URL is the worker's base URL, e.g. http://127.0.0.1:11333.
	URL string
	// Password, when set, is sent as the controller's Password header.
	Password string
	Client   *http.Client
}

// maxFilterReply bounds rspamd's answer.
const maxFilterReply = 4 << 20

// Score implements ContentFilter.
func (r *Rspamd) Score(ctx context.Context, msg []byte, env FilterEnvelope) (SpamResult, error) {
	client := r.Client
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(r.URL, "/")+"/checkv2", bytes.NewReader(msg))
	if err != nil {
		return SpamResult{}, fmt.Errorf("rspamd: %w", err)
	}
	for k, v := range map[string]string{"From": env.From, "Rcpt": env.Rcpt, "Hostname": env.Hostname, "Password": r.Password} {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		return SpamResult{}, fmt.Errorf("rspamd at %s: %w", r.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxFilterReply))
	if err != nil {
		return SpamResult{}, fmt.Errorf("rspamd at %s: %w", r.URL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return SpamResult{}, fmt.Errorf("rspamd at %s: HTTP %d: %.200s", r.URL, resp.StatusCode, body)
	}
	return ParseRspamdReply(body)
}

// ParseRspamdReply reads rspamd's /checkv2 JSON answer.
func ParseRspamdReply(body []byte) (SpamResult, error) {
	var raw struct {
		Score   *float64 `json:"score"`
		Action  string   `json:"action"`
		Symbols map[string]struct {
			Name        string   `json:"name"`
			Score       float64  `json:"score"`
			Description string   `json:"description"`
			Options     []string `json:"options"`
		} `json:"symbols"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return SpamResult{}, fmt.Errorf("rspamd: reply: %w", err)
	}
	if raw.Error != "" {
		return SpamResult{}, fmt.Errorf("rspamd: %.200s", raw.Error)
	}
	if raw.Score == nil {
		return SpamResult{}, errors.New("rspamd: reply without a score")
	}
	res := SpamResult{Filter: "rspamd", Score: *raw.Score, Action: raw.Action}
	for name, s := range raw.Symbols {
		if s.Name == "" {
			s.Name = name
		}
		res.Symbols = append(res.Symbols, SpamSymbol{Name: s.Name, Score: s.Score, Description: s.Description, Options: s.Options})
	}
	sort.Slice(res.Symbols, func(i, j int) bool {
		if res.Symbols[i].Score != res.Symbols[j].Score {
			return res.Symbols[i].Score > res.Symbols[j].Score
		}
		return res.Symbols[i].Name < res.Symbols[j].Name
	})
	return res, nil
}
