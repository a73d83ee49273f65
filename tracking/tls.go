package tracking

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/petrel-mta/petrel/events"
)

// CertManager serves the certificates of tracking domains: the
// operator's files ([[tracking.domain]] cert_file/key_file) for the hosts
// that have them, else certificates obtained and renewed over ACME
// (golang.org/x/crypto/acme/autocert, tls-alpn-01 on the TLS listener),
// only for verified domains with HTTPS on (Domains.TLSAllowed is the host
// policy: any other SNI name fails the handshake before any ACME
// traffic). ACME certificates are cached in a directory, so a restart
// does not ask again. CheckCerts watches every certificate's expiry.
type CertManager struct {
	m       *autocert.Manager
	cache   autocert.DirCache
	doms    *Domains
	files   map[string]CertFiles
	warning time.Duration
	now     func() time.Time
	log     *slog.Logger
	events  events.EventAppender

	mu     sync.RWMutex
	loaded map[string]*fileCert // host → the last good files
	state  map[string]string    // host → last alarm state (CheckCerts)

	expiry *prometheus.GaugeVec
	alarm  *prometheus.GaugeVec
}

// CertFiles are an operator's PEM certificate chain and key for a host.
type CertFiles struct{ Cert, Key string }

type fileCert struct {
	cert  *tls.Certificate
	err   error // the last reload's failure (the previous cert is kept)
	mtime time.Time
}

// CertOptions configure NewCertManager.
type CertOptions struct {
	// CacheDir keeps account key and certificates (0700).
	CacheDir string
	// DirectoryURL is the ACME directory ("" Let's Encrypt production).
	DirectoryURL string
	// HTTPClient talks to the ACME server (nil: http.DefaultClient).
	HTTPClient *http.Client
	// Email is the ACME account contact.
	Email string
	// Files are operator certificates by host (served instead of ACME).
	Files map[string]CertFiles
	// Warning is the alarm window before expiry (default 14 days).
	Warning time.Duration
	// Events receives the cert_expiring, cert_expired, cert_missing and
	// cert_ok events of CheckCerts (*queue.Queue); nil sends none.
	Events events.EventAppender
	// Registry gets petrel_tracking_cert_expiry_seconds{domain} and
	// petrel_tracking_cert_alarm{domain}; nil registers nothing.
	Registry prometheus.Registerer
	Logger   *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// NewCertManager returns the certificate manager of d's domains.
func NewCertManager(d *Domains, o CertOptions) (*CertManager, error) {
	if o.Warning <= 0 {
		o.Warning = 14 * 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	c := &CertManager{cache: autocert.DirCache(o.CacheDir), doms: d, files: map[string]CertFiles{}, warning: o.Warning,
		now: o.Now, log: o.Logger, events: o.Events, loaded: map[string]*fileCert{}, state: map[string]string{},
		expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "petrel_tracking_cert_expiry_seconds",
			Help: "Seconds until the tracking domain's certificate expires (negative: expired); absent while it has none."}, []string{"domain"}),
		alarm: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "petrel_tracking_cert_alarm",
			Help: "1 while the tracking domain's certificate is expiring, expired or missing."}, []string{"domain"}),
	}
	for h, f := range o.Files {
		c.files[normalHost(h)] = f
		c.reload(normalHost(h))
	}
	if o.Registry != nil {
		for _, g := range []prometheus.Collector{c.expiry, c.alarm} {
			if err := o.Registry.Register(g); err != nil {
				return nil, fmt.Errorf("tracking: cert metrics: %w", err)
			}
		}
	}
	c.m = &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      c.cache,
		Email:      o.Email,
		HostPolicy: func(ctx context.Context, host string) error { return d.TLSAllowed(ctx, host) },
		Client:     &acme.Client{DirectoryURL: o.DirectoryURL, HTTPClient: o.HTTPClient},
	}
	d.Cert = c.Info
	return c, nil
}

// reload reads host's operator files when they changed since the last
// good read; a failure keeps the previous certificate and is reported.
func (c *CertManager) reload(host string) {
	f := c.files[host]
	c.mu.RLock()
	prev := c.loaded[host]
	c.mu.RUnlock()
	st, err := os.Stat(f.Cert)
	if err == nil && prev != nil && prev.err == nil && st.ModTime().Equal(prev.mtime) {
		return
	}
	next := &fileCert{}
	if prev != nil {
		next.cert, next.mtime = prev.cert, prev.mtime
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	switch {
	case err != nil:
		next.err = fmt.Errorf("cert_file %s: %w", f.Cert, err)
	default:
		next.cert = &cert
		if st != nil {
			next.mtime = st.ModTime()
		}
		if cert.Leaf == nil {
			cert.Leaf, next.err = x509.ParseCertificate(cert.Certificate[0])
		}
	}
	c.mu.Lock()
	c.loaded[host] = next
	c.mu.Unlock()
}

// TLSConfig is the tracking listener's TLS config: the operator's
// certificate for hosts that have one, else ACME certificates by SNI,
// and the ACME tls-alpn-01 protocol.
func (c *CertManager) TLSConfig() *tls.Config {
	cfg := c.m.TLSConfig()
	cfg.MinVersion = tls.VersionTLS12
	acmeGet := cfg.GetCertificate
	cfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if _, ok := c.files[normalHost(hello.ServerName)]; ok {
			c.mu.RLock()
			fc := c.loaded[normalHost(hello.ServerName)]
			c.mu.RUnlock()
			if fc == nil || fc.cert == nil {
				return nil, fmt.Errorf("tracking: no certificate for %s: %v", hello.ServerName, fc.err)
			}
			return fc.cert, nil
		}
		return acmeGet(hello)
	}
	return cfg
}

// Info reads host's certificate (the operator's, else the ACME cache's):
// none, valid, expiring (within the warning window: for ACME, which
// renews 30 days ahead, that means renewal keeps failing) or expired.
func (c *CertManager) Info(host string) *CertInfo {
	host = normalHost(host)
	if _, ok := c.files[host]; ok {
		c.mu.RLock()
		fc := c.loaded[host]
		c.mu.RUnlock()
		info := &CertInfo{Status: "none", Source: "file"}
		if fc != nil && fc.cert != nil && fc.cert.Leaf != nil {
			info = c.describe(fc.cert.Leaf, "file")
		}
		if fc != nil && fc.err != nil {
			info.Error = fc.err.Error()
		}
		return info
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	b, err := c.cache.Get(ctx, host)
	if err != nil {
		return &CertInfo{Status: "none", Source: "acme"}
	}
	for len(b) > 0 {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			break
		}
		return c.describe(cert, "acme")
	}
	return &CertInfo{Status: "none", Source: "acme"}
}

func (c *CertManager) describe(cert *x509.Certificate, source string) *CertInfo {
	left := cert.NotAfter.Sub(c.now())
	st := "valid"
	switch {
	case left <= 0:
		st = "expired"
	case left < c.warning:
		st = "expiring"
	}
	days := int(left / (24 * time.Hour))
	if left < 0 && left%(24*time.Hour) != 0 {
		days-- // floor: an hour past expiry is day -1
	}
	return &CertInfo{Status: st, Issuer: cert.Issuer.CommonName, NotAfter: cert.NotAfter.UTC(), DaysLeft: days, Source: source}
}

// CertReport is one host's state after CheckCerts.
type CertReport struct {
	Host string
	CertInfo
	// Alarm is "" (fine), "cert_expiring", "cert_expired" or
	// "cert_missing" (an HTTPS domain that should have a certificate and
	// has none: its files do not load, or ACME issuance failed).
	Alarm string
}

// CheckCerts checks the certificate of every HTTPS tracking domain: the
// operator's files are re-read when they changed; a verified ACME domain
// without a certificate has one requested now (so a failing issuance is
// seen before a recipient's click). It sets the expiry gauge, logs a
// warning for each host in alarm, and appends an event when a host's
// alarm state changes (cert_expiring, cert_expired, cert_missing, and
// cert_ok once it is fine again), like reputation's blocklisted and
// delisted. The state is kept in memory, so a restart raises a standing
// alarm once more.
func (c *CertManager) CheckCerts(ctx context.Context) ([]CertReport, error) {
	list, err := c.doms.List(ctx)
	if err != nil {
		return nil, err
	}
	var out []CertReport
	var evs []events.Event
	seen := map[string]bool{}
	for _, d := range list {
		_, file := c.files[d.Host]
		if !d.HTTPS && !file {
			continue
		}
		seen[d.Host] = true
		if file {
			c.reload(d.Host)
		}
		info := c.Info(d.Host)
		if !file && info.Status == "none" && d.Status == DomainVerified {
			// Ask for it now; the handshake path would otherwise be
			// first. autocert bounds the order (minutes), so a stop
			// (ctx) does not wait for it.
			got := make(chan error, 1)
			go func() {
				_, err := c.m.GetCertificate(&tls.ClientHelloInfo{ServerName: d.Host})
				got <- err
			}()
			var err error
			select {
			case err = <-got:
			case <-ctx.Done():
				return out, ctx.Err()
			}
			if info = c.Info(d.Host); err != nil && info.Status == "none" {
				info.Error = err.Error()
			}
		}
		r := CertReport{Host: d.Host, CertInfo: *info}
		switch {
		case info.Status == "expired":
			r.Alarm = "cert_expired"
		case info.Status == "expiring":
			r.Alarm = "cert_expiring"
		case info.Status == "none" && (file || d.Status == DomainVerified):
			r.Alarm = "cert_missing"
		}
		if info.NotAfter.IsZero() {
			c.expiry.DeleteLabelValues(d.Host)
		} else {
			c.expiry.WithLabelValues(d.Host).Set(info.NotAfter.Sub(c.now()).Seconds())
		}
		c.alarm.WithLabelValues(d.Host).Set(b2f(r.Alarm != ""))
		reason := certReason(r)
		if r.Alarm != "" {
			c.log.Warn("tracking: certificate "+r.Alarm[len("cert_"):], "domain", d.Host, "status", info.Status,
				"not_after", info.NotAfter, "days_left", info.DaysLeft, "source", info.Source, "err", info.Error)
		}
		c.mu.Lock()
		prev, had := c.state[d.Host]
		c.state[d.Host] = r.Alarm
		c.mu.Unlock()
		switch {
		case r.Alarm != "" && r.Alarm != prev:
			evs = append(evs, events.Event{Type: r.Alarm, Time: c.now(), Reason: reason})
		case r.Alarm == "" && had && prev != "":
			c.log.Info("tracking: certificate fine again", "domain", d.Host, "not_after", info.NotAfter)
			evs = append(evs, events.Event{Type: "cert_ok", Time: c.now(), Reason: reason})
		}
		out = append(out, r)
	}
	c.mu.Lock()
	for h := range c.state {
		if !seen[h] {
			delete(c.state, h)
			c.expiry.DeleteLabelValues(h)
			c.alarm.DeleteLabelValues(h)
		}
	}
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	if len(evs) > 0 && c.events != nil {
		if err := c.events.AppendEvents(ctx, evs); err != nil {
			return out, fmt.Errorf("tracking: certificate events: %w", err)
		}
	}
	return out, nil
}

// certReason is an event's reason: the host first, then what is wrong.
func certReason(r CertReport) string {
	var b bytes.Buffer
	b.WriteString(r.Host)
	switch r.Status {
	case "none":
		b.WriteString(": no certificate")
		if r.Error != "" {
			b.WriteString(": " + r.Error)
		}
	default:
		fmt.Fprintf(&b, ": %s certificate (%s) expires %s, %d days left", r.Source, r.Status, r.NotAfter.Format(time.RFC3339), r.DaysLeft)
	}
	return b.String()
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// WatchCerts runs CheckCerts now and every interval until ctx ends.
func (c *CertManager) WatchCerts(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Hour
	}
	for {
		if _, err := c.CheckCerts(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("tracking: certificate check", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}
