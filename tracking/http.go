package tracking

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// pixelGIF is a transparent 1×1 GIF89a, 43 bytes.
var pixelGIF = []byte{
	'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0x80, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff,
	'!', 0xf9, 4, 1, 0, 0, 0, 0, ',', 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 'D', 1, 0, ';',
}

// Engagement is one open or click as the tracker saw it.
type Engagement struct {
	Kind      Kind
	Campaign  string
	Message   string
	Recipient string
	Link      int
	URL       string
	Time      time.Time
	IP        string
	UserAgent string
	// Machine is true when the request was made by software, not a
	// person opening or clicking: a privacy proxy prefetching images
	// (Apple Mail Privacy Protection), a link scanner, a HEAD request, or
	// a click within ScannerWindow of sending. MachineReason says which.
	Machine       bool
	MachineReason string
	// Proxy names the image proxy that fetched an open for a person
	// (Gmail, Yahoo): human, but IP and user agent are the proxy's.
	Proxy string
	// Provider and Stream come from the token: the recipient's mailbox
	// provider and the message's stream (campaign type), for the stats.
	Provider string `json:",omitempty"`
	Stream   string `json:",omitempty"`
}

// Recorder receives engagements. Record must not block the request for
// long: implementations batch (the engagement log commits in groups).
type Recorder interface {
	Record(ctx context.Context, e Engagement)
}

// ScannerWindow: a click or open this soon after the message was rendered
// is taken to be a security scanner's (people do not read that fast).
const ScannerWindow = 10 * time.Second

// Paths served by Handler.
const (
	OpenPath  = "/t/o/"
	ClickPath = "/t/c/"
)

// Handler serves the open pixel (GET|HEAD /t/o/{token}) and the click
// redirect (GET|HEAD /t/c/{token}). A token that does not verify, or of
// the wrong kind, is a 404 with no body worth caching; the redirect goes
// only to the URL sealed in the token. Both are public: no key.
type Handler struct {
	Signer   *Signer
	Recorder Recorder
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var want Kind
	var raw string
	switch {
	case strings.HasPrefix(r.URL.Path, OpenPath):
		want, raw = Open, strings.TrimSuffix(r.URL.Path[len(OpenPath):], ".gif")
	case strings.HasPrefix(r.URL.Path, ClickPath):
		want, raw = Click, r.URL.Path[len(ClickPath):]
	default:
		http.NotFound(w, r)
		return
	}
	tok, err := h.Signer.Decode(raw)
	if err != nil || tok.Kind != want {
		w.Header().Set("Cache-Control", "no-store")
		http.NotFound(w, r)
		return
	}
	now := h.now()
	if h.Recorder != nil {
		e := Engagement{Kind: tok.Kind, Campaign: tok.Campaign, Message: tok.Message, Recipient: tok.Recipient, Link: tok.Link, URL: tok.URL,
			Provider: tok.Provider, Stream: tok.Stream, Time: now, IP: clientIP(r), UserAgent: r.UserAgent()}
		Classify(&e, r.Method, tok.Sent)
		// The engagement happened even if the client goes away now (a
		// request context also ends when net/http sees the connection
		// close): record it, waiting at most a second for buffer room.
		// With room (the usual case) that is a channel send, no timer.
		if tr, ok := h.Recorder.(TryRecorder); !ok || !tr.TryRecord(e) {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Second)
			h.Recorder.Record(rctx, e)
			cancel()
		}
	}
	// The header values are shared, read-only slices (no allocation per
	// request; a later Set or Add replaces or copies them).
	hd := w.Header()
	hd["Cache-Control"], hd["Referrer-Policy"] = hdrNoStore, hdrNoReferrer
	if tok.Kind == Open {
		hd["Content-Type"], hd["Content-Length"] = hdrGIF, hdrGIFLen
		if r.Method == http.MethodGet {
			w.Write(pixelGIF)
		}
		return
	}
	hd["Location"] = []string{tok.URL}
	w.WriteHeader(http.StatusFound)
}

var (
	hdrNoStore    = []string{"no-store, no-cache, must-revalidate, max-age=0"}
	hdrNoReferrer = []string{"no-referrer"}
	hdrGIF        = []string{"image/gif"}
	hdrGIFLen     = []string{"43"}
)

// TryRecorder is a Recorder that can take an engagement without
// blocking (*Log): false when it has no room now.
type TryRecorder interface {
	TryRecord(e Engagement) bool
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// appleMPP is Apple's 17.0.0.0/8, from which Mail Privacy Protection
// fetches remote content with a bare "Mozilla/5.0" user agent.
var appleMPP = netip.MustParsePrefix("17.0.0.0/8")

// scannerAgents are user-agent substrings of link scanners and preview
// fetchers (lower case).
var scannerAgents = []string{
	"bot", "crawler", "spider", "preview", "scanner", "barracuda", "proofpoint", "mimecast",
	"symantec", "trendmicro", "forcepoint", "fireeye", "cisco", "ironport", "python-requests",
	"go-http-client", "curl/", "wget/", "java/", "okhttp", "headlesschrome", "phantomjs",
}

// scannerAgentBytes, agentGoogleProxy and agentYahooProxy are the agent
// substrings as bytes (read only), for bytes.Contains on the lowered agent.
var (
	scannerAgentBytes = func() [][]byte {
		out := make([][]byte, len(scannerAgents))
		for i, s := range scannerAgents {
			out[i] = []byte(s)
		}
		return out
	}()
	agentGoogleProxy = []byte("googleimageproxy")
	agentYahooProxy  = []byte("yahoomailproxy")
)

// asciiLower appends s to dst with ASCII letters in lower case (what
// strings.ToLower does to the ASCII agents that matter here; other bytes
// are kept as they are, and no pattern has any).
func asciiLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// Classify sets e's Machine, MachineReason and Proxy from the request
// method, its user agent and IP, and the time since the message was sent
// (sent in unix seconds; 0 unknown).
func Classify(e *Engagement, method string, sent int64) {
	// The user agent in lower case, in a stack buffer when it fits (no
	// allocation per request for the usual agents).
	var stack [512]byte
	ua := asciiLower(stack[:0], e.UserAgent)
	ip, _ := netip.ParseAddr(e.IP)
	switch {
	case method == http.MethodHead:
		e.Machine, e.MachineReason = true, "head_request"
	case e.Kind == Open && e.UserAgent == "Mozilla/5.0" && ip.IsValid() && appleMPP.Contains(ip.Unmap()):
		e.Machine, e.MachineReason = true, "apple_mpp"
	case bytes.Contains(ua, agentGoogleProxy):
		e.Proxy = "gmail" // fetched when the person opens the message
	case bytes.Contains(ua, agentYahooProxy):
		e.Proxy = "yahoo"
	case len(ua) == 0:
		e.Machine, e.MachineReason = true, "no_user_agent"
	default:
		for _, s := range scannerAgentBytes {
			if bytes.Contains(ua, s) {
				e.Machine, e.MachineReason = true, "scanner_agent"
				return
			}
		}
		if sent > 0 && e.Time.Sub(time.Unix(sent, 0)) < ScannerWindow {
			e.Machine, e.MachineReason = true, "too_soon"
		}
	}
}
