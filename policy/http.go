package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"strconv"

	"github.com/petrel-mta/petrel/internal/httpapi"
	"github.com/petrel-mta/petrel/policy/dkim"
	"github.com/petrel-mta/petrel/policy/domains"
	"github.com/petrel-mta/petrel/policy/suppress"
	"github.com/petrel-mta/petrel/policy/unsub"
)

// maxImport bounds a CSV import body (about 30M rows).
const maxImport = 1 << 30

// Handler serves the authenticated API (the lead mounts it behind
// API-key auth):
//
//	GET    /api/v1/suppressions?stream=&after=&limit=
//	POST   /api/v1/suppressions                 {address, stream, reason, source}
//	GET    /api/v1/suppressions/{stream}/{address}
//	DELETE /api/v1/suppressions/{stream}/{address}
//	POST   /api/v1/suppressions/import          CSV body (?source=&on_error=stop|skip)
//	GET    /api/v1/suppressions/export          CSV (?stream=)
//	GET    /api/v1/domains
//	POST   /api/v1/domains                      {domain, algorithm, dual}
//	GET    /api/v1/domains/{domain}
//	POST   /api/v1/domains/{domain}/check
//	DELETE /api/v1/domains/{domain}
func (e *Engine) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/suppressions", e.listSuppressions)
	mux.HandleFunc("POST /api/v1/suppressions", e.addSuppression)
	mux.HandleFunc("GET /api/v1/suppressions/export", e.exportSuppressions)
	mux.HandleFunc("POST /api/v1/suppressions/import", e.importSuppressions)
	mux.HandleFunc("GET /api/v1/suppressions/{stream}/{address}", e.getSuppression)
	mux.HandleFunc("DELETE /api/v1/suppressions/{stream}/{address}", e.removeSuppression)
	mux.HandleFunc("GET /api/v1/domains", e.listDomains)
	mux.HandleFunc("POST /api/v1/domains", e.addDomain)
	mux.HandleFunc("GET /api/v1/domains/{domain}", e.getDomain)
	mux.HandleFunc("POST /api/v1/domains/{domain}/check", e.checkDomainHTTP)
	mux.HandleFunc("DELETE /api/v1/domains/{domain}", e.removeDomain)
	return mux
}

func badRequest(w http.ResponseWriter, err error) {
	httpapi.WriteError(w, http.StatusBadRequest, "invalid_request", err.Error())
}

func serverError(w http.ResponseWriter, err error) {
	httpapi.WriteError(w, http.StatusInternalServerError, "internal", err.Error())
}

func (e *Engine) listSuppressions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 0
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 10000 {
			badRequest(w, fmt.Errorf("limit %q must be 1..10000", l))
			return
		}
		limit = n
	}
	p, err := e.store.List(q.Get("stream"), q.Get("after"), limit)
	if err != nil {
		badRequest(w, err)
		return
	}
	if p.Entries == nil {
		p.Entries = []suppress.Entry{}
	}
	httpapi.WriteJSON(w, http.StatusOK, p)
}

// suppressionRequest is the body of POST /api/v1/suppressions.
type suppressionRequest struct {
	Address string `json:"address"`
	Stream  string `json:"stream"`
	Reason  string `json:"reason"`
	Source  string `json:"source"`
}

func (e *Engine) addSuppression(w http.ResponseWriter, r *http.Request) {
	var req suppressionRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		badRequest(w, fmt.Errorf("body: %w", err))
		return
	}
	if req.Source == "" {
		req.Source = "api"
		if k, ok := httpapi.KeyFrom(r.Context()); ok && k.Name != "" {
			req.Source = "api:" + k.Name
		}
	}
	ent, err := e.store.Add(suppress.Entry{Address: req.Address, Stream: req.Stream, Reason: suppress.Reason(req.Reason), Source: req.Source})
	if err != nil {
		badRequest(w, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, ent)
}

func (e *Engine) getSuppression(w http.ResponseWriter, r *http.Request) {
	ent, err := e.store.Get(r.PathValue("stream"), r.PathValue("address"))
	e.entryAnswer(w, ent, err)
}

func (e *Engine) removeSuppression(w http.ResponseWriter, r *http.Request) {
	ent, err := e.store.Remove(r.PathValue("stream"), r.PathValue("address"))
	e.entryAnswer(w, ent, err)
}

func (e *Engine) entryAnswer(w http.ResponseWriter, ent suppress.Entry, err error) {
	switch {
	case errors.Is(err, suppress.ErrNotFound):
		httpapi.WriteError(w, http.StatusNotFound, "not_found", "address is not suppressed in that stream")
	case err != nil:
		badRequest(w, err)
	default:
		httpapi.WriteJSON(w, http.StatusOK, ent)
	}
}

func (e *Engine) importSuppressions(w http.ResponseWriter, r *http.Request) {
	src := r.URL.Query().Get("source")
	if src == "" {
		src = "import"
	}
	body := http.MaxBytesReader(w, r.Body, maxImport)
	switch r.URL.Query().Get("on_error") {
	case "", "stop":
	case "skip":
		rep, err := e.store.ImportSkipping(body, src)
		if err != nil {
			code, status := "invalid_csv", http.StatusBadRequest
			if errors.As(err, new(*http.MaxBytesError)) {
				code, status = "body_too_large", http.StatusRequestEntityTooLarge
			}
			httpapi.WriteJSON(w, status, map[string]any{"imported": rep.Imported, "skipped": rep.Skipped, "errors": rep.Errors,
				"error": httpapi.ErrorDetail{Code: code, Message: err.Error()}})
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, rep)
		return
	default:
		badRequest(w, fmt.Errorf("on_error %q: want stop or skip", r.URL.Query().Get("on_error")))
		return
	}
	n, err := e.store.Import(body, src)
	if err != nil {
		httpapi.WriteJSON(w, http.StatusBadRequest, map[string]any{
			"imported": n,
			"error":    httpapi.ErrorDetail{Code: "invalid_csv", Message: err.Error()},
		})
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]int{"imported": n})
}

func (e *Engine) exportSuppressions(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="suppressions.csv"`)
	if _, err := e.store.Export(w, r.URL.Query().Get("stream")); err != nil {
		// Headers are gone; the truncated body is all we can signal.
		e.log.Warn("suppression export failed", "err", err)
	}
}

func (e *Engine) listDomains(w http.ResponseWriter, r *http.Request) {
	out := []DomainInfo{}
	for _, d := range e.Domains() {
		info, err := e.Domain(d)
		if err != nil {
			serverError(w, err)
			return
		}
		out = append(out, info)
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"domains": out})
}

// domainRequest is the body of POST /api/v1/domains.
type domainRequest struct {
	Domain string `json:"domain"`
	// Algorithm of the generated key: "rsa" (default) or "ed25519".
	Algorithm string `json:"algorithm"`
	// Dual generates both an RSA ("s1") and an Ed25519 ("e1") key.
	Dual bool `json:"dual"`
}

func (e *Engine) addDomain(w http.ResponseWriter, r *http.Request) {
	var req domainRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		badRequest(w, fmt.Errorf("body: %w", err))
		return
	}
	if _, err := domains.Normalize(req.Domain); err != nil {
		badRequest(w, err)
		return
	}
	switch req.Algorithm {
	case "", dkim.AlgoRSA, dkim.AlgoEd25519:
	default:
		badRequest(w, fmt.Errorf("algorithm %q: want %q or %q", req.Algorithm, dkim.AlgoRSA, dkim.AlgoEd25519))
		return
	}
	info, err := e.AddDomain(r.Context(), req.Domain, req.Algorithm, req.Dual)
	if err != nil {
		serverError(w, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, info)
}

func (e *Engine) domainAnswer(w http.ResponseWriter, info DomainInfo, err error) {
	switch {
	case errors.Is(err, domains.ErrUnknown):
		httpapi.WriteError(w, http.StatusNotFound, "not_found", err.Error())
	case err != nil:
		badRequest(w, err)
	default:
		httpapi.WriteJSON(w, http.StatusOK, info)
	}
}

func (e *Engine) getDomain(w http.ResponseWriter, r *http.Request) {
	info, err := e.Domain(r.PathValue("domain"))
	e.domainAnswer(w, info, err)
}

func (e *Engine) checkDomainHTTP(w http.ResponseWriter, r *http.Request) {
	if _, err := e.CheckDomain(r.Context(), r.PathValue("domain")); err != nil {
		e.domainAnswer(w, DomainInfo{}, err)
		return
	}
	info, err := e.Domain(r.PathValue("domain"))
	e.domainAnswer(w, info, err)
}

func (e *Engine) removeDomain(w http.ResponseWriter, r *http.Request) {
	if err := e.RemoveDomain(r.PathValue("domain")); err != nil {
		e.domainAnswer(w, DomainInfo{}, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

var unsubPage = template.Must(template.New("unsub").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Unsubscribe</title></head><body style="font-family:sans-serif;max-width:32em;margin:3em auto">
{{if .Done}}<p>{{.Address}} is unsubscribed from {{.Stream}} mail.</p>
{{else}}<p>Stop sending {{.Stream}} mail to {{.Address}}?</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button></form>{{end}}
</body></html>
`))

// PublicHandler serves the one-click unsubscribe endpoint without API-key
// auth (the signed token is the authorisation):
//
//	GET  /unsubscribe/{token}  confirmation page with a POST form (a GET
//	                           never unsubscribes: link scanners follow GETs)
//	POST /unsubscribe/{token}  RFC 8058 one-click: suppresses the recipient
//	                           for the token's stream (reason unsubscribe)
//
// Invalid or forged tokens get 400.
func (e *Engine) PublicHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /unsubscribe/{token}", func(w http.ResponseWriter, r *http.Request) {
		e.unsubscribe(w, r, false)
	})
	mux.HandleFunc("POST /unsubscribe/{token}", func(w http.ResponseWriter, r *http.Request) {
		e.unsubscribe(w, r, true)
	})
	return mux
}

func (e *Engine) unsubscribe(w http.ResponseWriter, r *http.Request, do bool) {
	w.Header().Set("Cache-Control", "no-store")
	stream, rcpt, err := e.tokens.Parse(r.PathValue("token"))
	if err != nil {
		http.Error(w, "invalid unsubscribe link", http.StatusBadRequest)
		return
	}
	if do {
		_, _ = io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, 4<<10))
		if _, err := e.Unsubscribe(stream, rcpt, "one-click"); err != nil {
			e.log.Error("unsubscribe failed", "stream", stream, "err", err)
			http.Error(w, "unsubscribe failed, please retry", http.StatusInternalServerError)
			return
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = unsubPage.Execute(w, map[string]any{"Done": do, "Stream": stream, "Address": rcpt})
}

// Unsubscribe suppresses rcpt in stream with reason unsubscribe. via
// ("one-click", "mailto") is recorded as the source.
func (e *Engine) Unsubscribe(stream, rcpt, via string) (suppress.Entry, error) {
	ent, err := e.store.Add(suppress.Entry{Address: rcpt, Stream: stream, Reason: suppress.ReasonUnsubscribe, Source: "list-unsubscribe:" + via})
	if err != nil {
		return suppress.Entry{}, err
	}
	e.m.unsubscribed.WithLabelValues(stream).Inc()
	e.log.Info("unsubscribed", "stream", stream, "via", via)
	return ent, nil
}

// UnsubscribeMailto handles mail to an unsubscribe+<token>@ address (the
// bounce domain's inbound handler calls it): a valid token suppresses
// its recipient. ok is false when rcpt is not such an address.
func (e *Engine) UnsubscribeMailto(rcpt string) (ok bool, err error) {
	tok, ok := unsub.MailtoToken(rcpt)
	if !ok {
		return false, nil
	}
	stream, addr, err := e.tokens.Parse(tok)
	if err != nil {
		return true, fmt.Errorf("policy: %w", err)
	}
	_, err = e.Unsubscribe(stream, addr, "mailto")
	return true, err
}

// UnsubscribeURL is the link a marketing message puts in its body for
// rcpt in stream (%unsubscribe_url%): the page behind the one-click
// endpoint (<sending.unsubscribe_url>/unsubscribe/<token>), or the mailto
// address of List-Unsubscribe when no HTTPS base is configured; "" when
// neither is.
func (e *Engine) UnsubscribeURL(stream, rcpt string) string {
	tok := e.tokens.Make(stream, rcpt)
	switch {
	case e.cfg.Sending.UnsubscribeURL != "":
		return e.cfg.Sending.UnsubscribeURL + "/unsubscribe/" + tok
	case e.unsubDomain != "":
		return "mailto:unsubscribe+" + tok + "@" + e.unsubDomain
	}
	return ""
}

// ParseUnsubscribeToken checks an unsubscribe token (the one-click
// link's, also the preference centre's) and returns the stream and
// recipient it names; a forged or malformed token is an error.
func (e *Engine) ParseUnsubscribeToken(tok string) (stream, rcpt string, err error) {
	return e.tokens.Parse(tok)
}
