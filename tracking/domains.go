package tracking

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/idna"

	"github.com/petrel-mta/petrel/dns"
	"github.com/petrel-mta/petrel/internal/httpapi"
	"github.com/petrel-mta/petrel/internal/sqlq"
)

// Tracking domain statuses.
const (
	DomainPending  = "pending"  // added, not (successfully) checked yet
	DomainVerified = "verified" // its CNAME points at the target
	DomainFailed   = "failed"   // no CNAME, or one pointing elsewhere
)

// Domain is a custom tracking host of a sending domain: links and pixels
// of that sender's mail use it once its CNAME is verified (Postal's
// model: track.shop.example CNAME <our tracking host>).
type Domain struct {
	Host          string `json:"host"`
	SendingDomain string `json:"sending_domain"`
	// Target is the host the CNAME must point to.
	Target string `json:"target"`
	Status string `json:"status"`
	// Detail says why a check failed or is pending.
	Detail    string     `json:"detail,omitempty"`
	CheckedAt *time.Time `json:"checked_at,omitempty"`
	// HTTPS serves the domain over TLS with an ACME certificate (links
	// use https://); Certificate is its state when known.
	HTTPS       bool      `json:"https"`
	Certificate *CertInfo `json:"certificate,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}

// CertInfo is a tracking domain's certificate as the API shows it.
type CertInfo struct {
	// Status is "none" (no certificate yet), "valid", "expiring" (within
	// the alarm window, [tracking] cert_expiry_warning), or "expired".
	Status   string    `json:"status"`
	Issuer   string    `json:"issuer,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"`
	// DaysLeft is whole days until NotAfter (negative once expired).
	DaysLeft int `json:"days_left"`
	// Source is "acme" or "file" (the operator's cert_file).
	Source string `json:"source,omitempty"`
	// Error says why there is no certificate, or why the operator's
	// files did not load (the previous certificate is still served).
	Error string `json:"error,omitempty"`
}

// CNAMEResolver is what a check asks (*dns.Resolver).
type CNAMEResolver interface {
	LookupCNAME(ctx context.Context, name string) (string, error)
}

// Domains is the registry of tracking domains in the ESP database (table
// tracking_domains, SQLite or PostgreSQL).
type Domains struct {
	db       *sql.DB
	pg       bool
	resolver CNAMEResolver
	target   string
	now      func() time.Time
	// Cert, when set, reports a host's certificate (the ACME cache).
	Cert func(host string) *CertInfo

	// https is the in-memory set of hosts with HTTPS on and their
	// status, read by the plain-HTTP redirect on every request (no SQL
	// on the request path). This process's changes refresh it at once;
	// another instance's (a shared PostgreSQL) within httpsMaxAge.
	https      atomic.Pointer[httpsHosts]
	refreshing atomic.Bool
	// refreshMu makes refreshes one at a time, query and store together:
	// a background refresh whose query ran before a change committed
	// cannot store its snapshot after the change's own refresh.
	refreshMu sync.Mutex
}

// httpsHosts is one snapshot of the HTTPS tracking hosts.
type httpsHosts struct {
	verified map[string]bool // host → CNAME verified
	at       time.Time
}

// httpsMaxAge is how old the snapshot of HTTPS hosts may get before a
// request starts a refresh in the background.
const httpsMaxAge = 5 * time.Second

// NewDomains opens the registry on db (creating its table); target is
// the default CNAME target (petreld's hostname).
func NewDomains(ctx context.Context, db *sql.DB, postgres bool, resolver CNAMEResolver, target string) (*Domains, error) {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS tracking_domains (
		host TEXT PRIMARY KEY,
		sending_domain TEXT NOT NULL,
		target TEXT NOT NULL,
		status TEXT NOT NULL,
		detail TEXT NOT NULL DEFAULT '',
		checked_at BIGINT,
		https BOOLEAN NOT NULL DEFAULT FALSE,
		created_at BIGINT NOT NULL)`); err != nil {
		return nil, fmt.Errorf("tracking: domains table: %w", err)
	}
	d := &Domains{db: db, pg: postgres, resolver: resolver, target: normalHost(target), now: time.Now}
	if err := d.refreshHTTPS(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// refreshHTTPS reloads the snapshot of hosts with HTTPS on.
func (d *Domains) refreshHTTPS(ctx context.Context) error {
	d.refreshMu.Lock()
	defer d.refreshMu.Unlock()
	rows, err := d.db.QueryContext(ctx, `SELECT host, status FROM tracking_domains WHERE https`)
	if err != nil {
		return fmt.Errorf("tracking: https domains: %w", err)
	}
	defer rows.Close()
	m := map[string]bool{}
	for rows.Next() {
		var host, status string
		if err := rows.Scan(&host, &status); err != nil {
			return fmt.Errorf("tracking: https domains: %w", err)
		}
		m[host] = status == DomainVerified
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("tracking: https domains: %w", err)
	}
	d.https.Store(&httpsHosts{verified: m, at: time.Now()})
	return nil
}

// httpsHost reports whether host (normalised) is a tracking domain with
// HTTPS on, and whether its CNAME is verified. A snapshot older than
// httpsMaxAge is refreshed in the background (one refresh at a time);
// the request goes on with the one it has.
func (d *Domains) httpsHost(host string) (https, verified bool) {
	snap := d.https.Load()
	if snap == nil {
		return false, false
	}
	if time.Since(snap.at) > httpsMaxAge && d.refreshing.CompareAndSwap(false, true) {
		go func() {
			defer d.refreshing.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = d.refreshHTTPS(ctx) // a failure keeps the last snapshot; the next request retries
		}()
	}
	verified, https = snap.verified[host]
	return https, verified
}

func (d *Domains) q(query string) string { return sqlq.Rebind(d.pg, query) }

func normalHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
}

// ErrUnknownDomain is returned for a host that is not registered.
var ErrUnknownDomain = errors.New("tracking: no such tracking domain")

// ErrInvalidDomain is returned for a malformed host or sending domain.
var ErrInvalidDomain = errors.New("tracking: invalid domain")

// hostName is two or more LDH labels of 1-63 characters.
var hostName = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

func checkHost(h string) (string, error) {
	a, err := idna.Lookup.ToASCII(normalHost(h))
	if err != nil || !hostName.MatchString(a) || len(a) > 253 {
		return "", fmt.Errorf("%w: %q", ErrInvalidDomain, h)
	}
	return a, nil
}

// Add registers dom (status pending) and returns it as stored. Target
// "" means the default.
func (d *Domains) Add(ctx context.Context, dom Domain) (Domain, error) {
	var err error
	if dom.Host, err = checkHost(dom.Host); err != nil {
		return Domain{}, err
	}
	if dom.SendingDomain, err = checkHost(dom.SendingDomain); err != nil {
		return Domain{}, err
	}
	if dom.Target == "" {
		dom.Target = d.target
	}
	if dom.Target, err = checkHost(dom.Target); err != nil {
		return Domain{}, err
	}
	dom.Status, dom.Detail, dom.CheckedAt = DomainPending, "CNAME not checked yet", nil
	dom.CreatedAt = d.now().UTC().Truncate(time.Second)
	if _, err := d.db.ExecContext(ctx, d.q(`INSERT INTO tracking_domains (host, sending_domain, target, status, detail, https, created_at) VALUES (?,?,?,?,?,?,?)
		ON CONFLICT (host) DO UPDATE SET sending_domain = excluded.sending_domain, target = excluded.target, status = excluded.status,
		detail = excluded.detail, checked_at = NULL, https = excluded.https`),
		dom.Host, dom.SendingDomain, dom.Target, dom.Status, dom.Detail, dom.HTTPS, dom.CreatedAt.Unix()); err != nil {
		return Domain{}, fmt.Errorf("tracking: add domain: %w", err)
	}
	if err := d.refreshHTTPS(ctx); err != nil {
		return Domain{}, err
	}
	return d.Get(ctx, dom.Host)
}

// Ensure adds dom when its host is not registered yet and leaves an
// existing entry (and its status) alone: the [[tracking.domain]] entries
// are ensured at every start.
func (d *Domains) Ensure(ctx context.Context, dom Domain) error {
	if _, err := d.Get(ctx, dom.Host); err == nil {
		return nil
	} else if !errors.Is(err, ErrUnknownDomain) && !errors.Is(err, ErrInvalidDomain) {
		return err
	}
	_, err := d.Add(ctx, dom)
	return err
}

// CheckAll checks every domain that is not verified yet (and re-checks
// verified ones, so a removed CNAME turns failed); it returns the first
// error after trying all.
func (d *Domains) CheckAll(ctx context.Context) error {
	l, err := d.List(ctx)
	if err != nil {
		return err
	}
	var first error
	for _, dom := range l {
		if _, err := d.Check(ctx, dom.Host); err != nil && first == nil {
			first = err
		}
	}
	return first
}

const domainCols = `host, sending_domain, target, status, detail, checked_at, https, created_at`

func (d *Domains) scan(rows interface{ Scan(...any) error }) (Domain, error) {
	var dom Domain
	var checked sql.NullInt64
	var created int64
	if err := rows.Scan(&dom.Host, &dom.SendingDomain, &dom.Target, &dom.Status, &dom.Detail, &checked, &dom.HTTPS, &created); err != nil {
		return Domain{}, err
	}
	if checked.Valid {
		t := time.Unix(checked.Int64, 0).UTC()
		dom.CheckedAt = &t
	}
	dom.CreatedAt = time.Unix(created, 0).UTC()
	if dom.HTTPS && d.Cert != nil {
		dom.Certificate = d.Cert(dom.Host)
	}
	return dom, nil
}

// Get returns one tracking domain.
func (d *Domains) Get(ctx context.Context, host string) (Domain, error) {
	dom, err := d.scan(d.db.QueryRowContext(ctx, d.q(`SELECT `+domainCols+` FROM tracking_domains WHERE host = ?`), normalHost(host)))
	if errors.Is(err, sql.ErrNoRows) {
		return Domain{}, fmt.Errorf("%w: %s", ErrUnknownDomain, host)
	}
	if err != nil {
		return Domain{}, fmt.Errorf("tracking: domain: %w", err)
	}
	return dom, nil
}

// List returns every tracking domain by host.
func (d *Domains) List(ctx context.Context) ([]Domain, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT `+domainCols+` FROM tracking_domains ORDER BY host`)
	if err != nil {
		return nil, fmt.Errorf("tracking: domains: %w", err)
	}
	defer rows.Close()
	out := []Domain{}
	for rows.Next() {
		dom, err := d.scan(rows)
		if err != nil {
			return nil, fmt.Errorf("tracking: domains: %w", err)
		}
		out = append(out, dom)
	}
	return out, rows.Err()
}

// Remove deletes a tracking domain.
func (d *Domains) Remove(ctx context.Context, host string) error {
	res, err := d.db.ExecContext(ctx, d.q(`DELETE FROM tracking_domains WHERE host = ?`), normalHost(host))
	if err != nil {
		return fmt.Errorf("tracking: remove domain: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %s", ErrUnknownDomain, host)
	}
	return d.refreshHTTPS(ctx)
}

// Check looks the host's CNAME up and records the outcome: verified when
// it points at the target, failed when there is none or it points
// elsewhere (or the name does not exist); a DNS failure (timeout,
// SERVFAIL) leaves the status as it was, with the error as detail.
func (d *Domains) Check(ctx context.Context, host string) (Domain, error) {
	dom, err := d.Get(ctx, host)
	if err != nil {
		return Domain{}, err
	}
	got, err := d.resolver.LookupCNAME(ctx, dom.Host)
	status, detail := dom.Status, ""
	switch {
	case errors.Is(err, dns.ErrNoSuchDomain):
		status, detail = DomainFailed, fmt.Sprintf("%s does not exist: add %s CNAME %s.", dom.Host, dom.Host, dom.Target)
	case err != nil:
		detail = "DNS lookup failed, will retry: " + err.Error()
	case got == "":
		status, detail = DomainFailed, fmt.Sprintf("no CNAME record: add %s CNAME %s.", dom.Host, dom.Target)
	case normalHost(got) != dom.Target:
		status, detail = DomainFailed, fmt.Sprintf("CNAME points to %s, want %s", got, dom.Target)
	default:
		status = DomainVerified
	}
	if _, err := d.db.ExecContext(ctx, d.q(`UPDATE tracking_domains SET status = ?, detail = ?, checked_at = ? WHERE host = ?`),
		status, detail, d.now().Unix(), dom.Host); err != nil {
		return Domain{}, fmt.Errorf("tracking: check domain: %w", err)
	}
	if status != dom.Status && dom.HTTPS {
		if err := d.refreshHTTPS(ctx); err != nil {
			return Domain{}, err
		}
	}
	return d.Get(ctx, dom.Host)
}

// BaseURL is where tracked links and pixels of mail from sendingDomain
// point: its verified tracking domain (https:// when HTTPS is on), and
// ok false when it has none (use the default tracking URL).
func (d *Domains) BaseURL(ctx context.Context, sendingDomain string) (string, bool, error) {
	var host string
	var https bool
	err := d.db.QueryRowContext(ctx, d.q(`SELECT host, https FROM tracking_domains WHERE sending_domain = ? AND status = 'verified' ORDER BY host LIMIT 1`),
		normalHost(sendingDomain)).Scan(&host, &https)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("tracking: base url: %w", err)
	}
	if https {
		return "https://" + host, true, nil
	}
	return "http://" + host, true, nil
}

// TLSAllowed is the ACME host policy: only verified tracking domains
// with HTTPS on get a certificate (a request for any other SNI name is
// refused before any ACME traffic).
func (d *Domains) TLSAllowed(ctx context.Context, host string) error {
	dom, err := d.Get(ctx, host)
	if err != nil {
		return err
	}
	if !dom.HTTPS || dom.Status != DomainVerified {
		return fmt.Errorf("tracking: %s is %s (https %v): no certificate", host, dom.Status, dom.HTTPS)
	}
	return nil
}

// Handler serves the tracking-domain API (mount it behind the API key):
//
//	GET    /api/v1/tracking/domains                 list
//	POST   /api/v1/tracking/domains                 add {host, sending_domain, target?, https?} (201, pending)
//	GET    /api/v1/tracking/domains/{host}          one, with its certificate
//	POST   /api/v1/tracking/domains/{host}/check    look the CNAME up now
//	DELETE /api/v1/tracking/domains/{host}          remove
func (d *Domains) Handler() http.Handler {
	mux := http.NewServeMux()
	answer := func(w http.ResponseWriter, code int, dom Domain, err error) {
		switch {
		case errors.Is(err, ErrUnknownDomain):
			httpapi.WriteError(w, http.StatusNotFound, "not_found", err.Error())
		case errors.Is(err, ErrInvalidDomain):
			httpapi.WriteError(w, http.StatusBadRequest, "invalid_domain", err.Error())
		case err != nil:
			httpapi.WriteError(w, http.StatusInternalServerError, "internal", err.Error())
		default:
			httpapi.WriteJSON(w, code, dom)
		}
	}
	mux.HandleFunc("GET /api/v1/tracking/domains", func(w http.ResponseWriter, r *http.Request) {
		l, err := d.List(r.Context())
		if err != nil {
			httpapi.WriteError(w, http.StatusInternalServerError, "internal", err.Error())
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"domains": l})
	})
	mux.HandleFunc("POST /api/v1/tracking/domains", func(w http.ResponseWriter, r *http.Request) {
		var in Domain
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			httpapi.WriteError(w, http.StatusBadRequest, "invalid_json", "request body: "+err.Error())
			return
		}
		dom, err := d.Add(r.Context(), in)
		answer(w, http.StatusCreated, dom, err)
	})
	mux.HandleFunc("GET /api/v1/tracking/domains/{host}", func(w http.ResponseWriter, r *http.Request) {
		dom, err := d.Get(r.Context(), r.PathValue("host"))
		answer(w, http.StatusOK, dom, err)
	})
	mux.HandleFunc("POST /api/v1/tracking/domains/{host}/check", func(w http.ResponseWriter, r *http.Request) {
		dom, err := d.Check(r.Context(), r.PathValue("host"))
		answer(w, http.StatusOK, dom, err)
	})
	mux.HandleFunc("DELETE /api/v1/tracking/domains/{host}", func(w http.ResponseWriter, r *http.Request) {
		if err := d.Remove(r.Context(), r.PathValue("host")); err != nil {
			answer(w, 0, Domain{}, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}
