package audience

import (
	"context"
	"errors"
	"html/template"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/petrel-mta/petrel/internal/httpapi"
)

var confirmPage = template.Must(template.New("confirm").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Confirm your subscription</title></head><body style="font-family:sans-serif;max-width:32em;margin:3em auto">
{{if .Error}}<p>{{.Error}}</p>
{{else if eq .Status "active"}}<p>{{.Email}} is subscribed to {{.Audience}}. Thank you.</p>
{{else if eq .Status "pending"}}<p>Subscribe {{.Email}} to {{.Audience}}?</p>
<form method="post"><button type="submit">Confirm my subscription</button></form>
{{else}}<p>{{.Email}} cannot be subscribed to {{.Audience}} from this link (status {{.Status}}).</p>{{end}}
</body></html>
`))

// Handler serves the public confirmation route (no API key: the signed
// token is the authorisation):
//
//	GET  /confirm/{token}   page with a POST form; a GET never confirms
//	                        (link scanners and previews follow GETs)
//	POST /confirm/{token}   confirms: the pending contact becomes active
//	                        and its ledger records the grant (IP, user
//	                        agent, time)
//
// A forged or malformed token is 400, an expired one 410.
func (c *Confirmer) Handler() http.Handler {
	m := newRouteMux()
	m.HandleFunc("GET /confirm/{token}", func(w http.ResponseWriter, r *http.Request) { c.serveConfirm(w, r, false) })
	m.HandleFunc("POST /confirm/{token}", func(w http.ResponseWriter, r *http.Request) { c.serveConfirm(w, r, true) })
	return m
}

func (c *Confirmer) serveConfirm(w http.ResponseWriter, r *http.Request, do bool) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Frame-Options", "DENY")
	var cf Confirmation
	var err error
	if do {
		_, _ = io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, 4<<10))
		ip, _, splitErr := net.SplitHostPort(r.RemoteAddr)
		if splitErr != nil {
			ip = r.RemoteAddr
		}
		// The confirmation is not abandoned half-way when the client goes
		// (the request's context can end once its body is read).
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
		cf, err = c.Confirm(ctx, r.PathValue("token"), ip, r.UserAgent())
		cancel()
	} else {
		cf, err = c.Lookup(r.Context(), r.PathValue("token"))
	}
	page := map[string]any{"Email": cf.Email, "Audience": cf.Audience, "Status": string(cf.Status)}
	switch {
	case errors.Is(err, ErrBadToken):
		w.WriteHeader(http.StatusBadRequest)
		page["Error"] = "This confirmation link is not valid."
	case errors.Is(err, ErrExpiredToken):
		w.WriteHeader(http.StatusGone)
		page["Error"] = "This confirmation link has expired. Please subscribe again."
	case err != nil:
		c.o.Logger.Error("audience: confirm failed", "err", err)
		w.WriteHeader(http.StatusInternalServerError)
		page["Error"] = "Confirmation failed, please retry."
	}
	_ = confirmPage.Execute(w, page)
}

// mountOptIn adds the opt-in settings routes to the audience API:
//
//	GET /api/v1/audiences/{aid}/opt-in   the confirmation mail (default when none set: "default": true)
//	PUT /api/v1/audiences/{aid}/opt-in   set it {from, from_name, subject, body, purpose, consent_text}
func (h *handler) mountOptIn(m *routeMux, p string) {
	m.HandleFunc("GET "+p+"/{aid}/opt-in", func(w http.ResponseWriter, r *http.Request) {
		aid, _, err := ids(r, "")
		if err != nil {
			h.fail(w, r, err)
			return
		}
		o, ok, err := h.s.OptInSettings(r.Context(), aid)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, struct {
			OptInSettings
			Default bool `json:"default"`
		}{o, !ok})
	})
	m.HandleFunc("PUT "+p+"/{aid}/opt-in", func(w http.ResponseWriter, r *http.Request) {
		aid, _, err := ids(r, "")
		if err != nil {
			h.fail(w, r, err)
			return
		}
		var in OptInSettings
		if err := decode(w, r, &in); err != nil {
			h.fail(w, r, err)
			return
		}
		o, err := h.s.SetOptInSettings(r.Context(), aid, in)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, o)
	})
}
