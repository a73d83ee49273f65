package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// HTTPLoad describes an HTTP injection load against Petrel's
// POST /api/v1/messages: Messages requests over Sessions concurrent
// clients, each carrying one raw message with Recipients recipients.
type HTTPLoad struct {
	// BaseURL is "http://127.0.0.1:port".
	BaseURL string
	// Key is the API bearer key.
	Key string
	// Sessions, Messages, Size, Recipients, From and RcptDomain mean the
	// same as in SMTPLoad.
	Sessions   int
	Messages   int
	Size       int
	Recipients int
	From       string
	RcptDomain string
	// Timeout bounds one request (default 60s).
	Timeout time.Duration
}

// injectRequest is the JSON body of POST /api/v1/messages.
type injectRequest struct {
	From string   `json:"from"`
	To   []string `json:"to"`
	Raw  string   `json:"raw"`
}

// InjectResponse is the 202 answer of POST /api/v1/messages.
type InjectResponse struct {
	ID         string `json:"id"`
	Recipients []struct {
		Address string `json:"address"`
		Status  string `json:"status"`
	} `json:"recipients"`
}

// RunHTTP sends the load and returns what the server answered: 202 counts
// as accepted, 429 and 5xx as temporary failures, other codes as
// permanent failures. It returns an error only for bad options or a
// cancelled ctx.
func RunHTTP(ctx context.Context, o HTTPLoad) (*LoadResult, error) {
	s := SMTPLoad{Sessions: o.Sessions, Size: o.Size, Recipients: o.Recipients, From: o.From, RcptDomain: o.RcptDomain, Timeout: o.Timeout}
	s.defaults()
	if o.BaseURL == "" {
		return nil, errors.New("loadgen: no base URL")
	}
	url := strings.TrimSuffix(o.BaseURL, "/") + "/api/v1/messages"
	tr := &http.Transport{MaxIdleConns: s.Sessions, MaxIdleConnsPerHost: s.Sessions, IdleConnTimeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: s.Timeout}

	var next atomic.Int64
	var col resultCollector
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < s.Sessions; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			col.merge(httpWorker(ctx, client, url, o.Key, &s, o.Messages, w, &next))
		}()
	}
	wg.Wait()
	col.res.Start, col.res.End = start, time.Now()
	if err := ctx.Err(); err != nil {
		return &col.res, fmt.Errorf("loadgen: %w", err)
	}
	return &col.res, nil
}

func httpWorker(ctx context.Context, client *http.Client, url, key string, o *SMTPLoad, total, worker int, next *atomic.Int64) *LoadResult {
	res := &LoadResult{}
	f := newMessageFactory(o.From, o.Size)
	var raw []byte
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	for ctx.Err() == nil {
		i := int(next.Add(1) - 1)
		if i >= total {
			return res
		}
		req := injectRequest{From: o.From, To: make([]string, o.Recipients)}
		for j := range req.To {
			req.To[j] = recipient(o.RcptDomain, i, j)
		}
		raw = f.appendMessage(raw[:0], i, worker, req.To[0])
		req.Raw = string(raw)
		body.Reset()
		if err := enc.Encode(&req); err != nil {
			res.Errors++
			continue
		}
		hr, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body.Bytes()))
		if err != nil {
			res.Errors++
			if res.FirstErr == nil {
				res.FirstErr = fmt.Errorf("loadgen: %w", err)
			}
			return res
		}
		hr.Header.Set("Content-Type", "application/json")
		hr.Header.Set("Authorization", "Bearer "+key)
		t0 := time.Now()
		resp, err := client.Do(hr)
		if err != nil {
			res.Errors++
			if res.FirstErr == nil {
				res.FirstErr = fmt.Errorf("loadgen: POST: %w", err)
			}
			continue
		}
		var ir InjectResponse
		derr := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ir)
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		lat := time.Since(t0)
		switch {
		case resp.StatusCode == http.StatusAccepted && derr == nil:
			res.Accepted++
			res.Recipients += int64(len(ir.Recipients))
			res.Latencies = append(res.Latencies, lat)
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
			res.TempFailed++
		default:
			res.PermFailed++
			if res.FirstErr == nil {
				res.FirstErr = fmt.Errorf("loadgen: POST answered %d (decode: %v)", resp.StatusCode, derr)
			}
		}
	}
	return res
}
