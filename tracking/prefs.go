package tracking

import (
	"context"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"

	"github.com/petrel-mta/petrel/audience"
)

// PreferenceStore is what the preference centre reads and changes: the
// audience store's subscriptions and opt-outs (*audience.Store).
type PreferenceStore interface {
	Subscriptions(ctx context.Context, email string) ([]audience.Subscription, error)
	OptOutAudiences(ctx context.Context, email string, ids []int64, o audience.OptOut) ([]int64, int, error)
}

// Preferences is the public preference centre. Its links carry the
// List-Unsubscribe token (policy: HMAC over stream and recipient), which
// is the only authorisation: no cookie, no session, so a forged or
// edited token is a 400 and there is no ambient credential a cross-site
// form could ride on (browser POSTs from another origin are refused
// anyway, by http.CrossOriginProtection). A GET never changes anything
// (link scanners follow GETs).
//
//	GET  /unsubscribe/{token}   the preference page (the link in every marketing message)
//	POST /unsubscribe/{token}   RFC 8058 one-click: unsubscribe from all mail of the token's stream
//	GET  /preferences/{token}   the preference page
//	POST /preferences/{token}   the page's form: action=save (keep=<audience id>... stay
//	                            subscribed, the others are left) or action=all
//
// Leaving a list sets the contact there unsubscribed and appends a
// marketing withdrawal to its consent ledger (one SQL transaction).
// Leaving everything — the one-click POST, action=all, or a save that
// leaves no subscribed list — first adds the suppression (Suppress: the
// suppression store, whose outbox event makes every contact of the
// address follow even after a crash), then writes the ledger and statuses
// at once with the person's IP and user agent. So suppression and contact
// status agree: an address is suppressed for marketing exactly when it
// left everything.
type Preferences struct {
	// Parse checks a token, returning its stream and recipient
	// (policy.Engine.ParseUnsubscribeToken).
	Parse func(token string) (stream, rcpt string, err error)
	// Suppress suppresses rcpt in stream for reason unsubscribe
	// (policy.Engine.Unsubscribe); via is "one-click" or "preference-centre".
	Suppress func(stream, rcpt, via string) error
	Store    PreferenceStore
	Logger   *slog.Logger

	loc *localizer
}

// Handler returns the preference centre's routes.
func (p *Preferences) Handler() http.Handler {
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	p.loc = newLocalizer()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /unsubscribe/{token}", p.show)
	mux.HandleFunc("GET /preferences/{token}", p.show)
	mux.HandleFunc("POST /unsubscribe/{token}", p.oneClick)
	// The form's POST comes from our own page; a browser POST from any
	// other origin (Sec-Fetch-Site / Origin) is refused. Mail providers'
	// one-click POSTs are server-to-server and go to /unsubscribe.
	mux.Handle("POST /preferences/{token}", http.NewCrossOriginProtection().Handler(http.HandlerFunc(p.save)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every answer, the cross-origin refusal included: never cached,
		// never framed, no referrer leaking the token.
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
		mux.ServeHTTP(w, r)
	})
}

// page is what the template renders.
type page struct {
	Lang    string
	T       func(key string, args ...any) string
	Token   string
	Address string
	Stream  string
	Lists   []audience.Subscription
	// Message is the outcome of a POST, announced as a status.
	Message string
	Error   string
	Done    bool // unsubscribed from everything
}

// request parses the token and picks the language; ok false means the
// answer was written.
func (p *Preferences) request(w http.ResponseWriter, r *http.Request) (page, bool) {
	tag, pr := p.loc.pick(r)
	pg := page{Lang: tag.String(), T: func(k string, a ...any) string { return pr.Sprintf(k, a...) }, Token: r.PathValue("token")}
	stream, rcpt, err := p.Parse(pg.Token)
	if err != nil {
		pg.Error = pr.Sprintf("This link is not valid.")
		p.render(w, http.StatusBadRequest, pg)
		return pg, false
	}
	pg.Stream, pg.Address = stream, rcpt
	return pg, true
}

func (p *Preferences) show(w http.ResponseWriter, r *http.Request) {
	pg, ok := p.request(w, r)
	if !ok {
		return
	}
	p.finish(w, r, pg, http.StatusOK)
}

// finish loads the lists and renders pg.
func (p *Preferences) finish(w http.ResponseWriter, r *http.Request, pg page, code int) {
	if p.listsApply(pg.Stream) {
		subs, err := p.Store.Subscriptions(r.Context(), pg.Address)
		if err != nil {
			p.fail(w, pg, "load subscriptions", err)
			return
		}
		pg.Lists = subs
	}
	p.render(w, code, pg)
}

// listsApply: audience lists are marketing mail; another stream's token
// (a transactional stream's List-Unsubscribe) offers only leaving it.
func (p *Preferences) listsApply(stream string) bool {
	return p.Store != nil && (stream == "marketing" || stream == "*")
}

func (p *Preferences) oneClick(w http.ResponseWriter, r *http.Request) {
	pg, ok := p.request(w, r)
	if !ok {
		return
	}
	// The body is List-Unsubscribe=One-Click; any POST counts (RFC 8058
	// clients vary), but it is read first, whatever its type, so a
	// request whose body has not arrived does not act yet (the public
	// routes' read deadline and per-IP cap bound the wait).
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		pg.Error = pg.T("Something went wrong. Please try again.")
		p.render(w, http.StatusBadRequest, pg)
		return
	}
	p.leaveAll(w, r, pg, "one-click", "unsubscribe")
}

func (p *Preferences) save(w http.ResponseWriter, r *http.Request) {
	pg, ok := p.request(w, r)
	if !ok {
		return
	}
	if err := r.ParseForm(); err != nil {
		pg.Error = pg.T("Something went wrong. Please try again.")
		p.render(w, http.StatusBadRequest, pg)
		return
	}
	if r.PostForm.Get("action") == "all" || !p.listsApply(pg.Stream) {
		p.leaveAll(w, r, pg, "preference-centre", "preference_centre")
		return
	}
	keep := map[int64]bool{}
	for _, v := range r.PostForm["keep"] {
		if id, err := strconv.ParseInt(v, 10, 64); err == nil {
			keep[id] = true
		}
	}
	subs, err := p.Store.Subscriptions(r.Context(), pg.Address)
	if err != nil {
		p.fail(w, pg, "load subscriptions", err)
		return
	}
	var leave []int64
	subscribed := 0
	for _, s := range subs {
		if s.Subscribed {
			subscribed++
			if !keep[s.AudienceID] {
				leave = append(leave, s.AudienceID)
			}
		}
	}
	if subscribed > 0 && len(leave) == subscribed {
		// Nothing kept: that is leaving everything, suppression included.
		p.leaveAll(w, r, pg, "preference-centre", "preference_centre")
		return
	}
	if len(leave) > 0 {
		if _, _, err := p.Store.OptOutAudiences(r.Context(), pg.Address, leave, p.optOut(r, "preference_centre")); err != nil {
			p.fail(w, pg, "opt out", err)
			return
		}
	}
	pg.Message = pg.T("Your preferences are saved.")
	p.finish(w, r, pg, http.StatusOK)
}

// leaveAll suppresses the address in the token's stream, then (marketing)
// unsubscribes it from every list with a ledger withdrawal.
func (p *Preferences) leaveAll(w http.ResponseWriter, r *http.Request, pg page, via, source string) {
	if err := p.Suppress(pg.Stream, pg.Address, via); err != nil {
		p.fail(w, pg, "suppress", err)
		return
	}
	if p.listsApply(pg.Stream) {
		if _, _, err := p.Store.OptOutAudiences(r.Context(), pg.Address, nil, p.optOut(r, source)); err != nil {
			// The suppression is durable and its event makes the
			// contacts follow; the person can still retry.
			p.fail(w, pg, "opt out of all lists", err)
			return
		}
	}
	pg.Done = true
	pg.Message = pg.T("%s will get no more %s mail.", pg.Address, pg.T(pg.Stream))
	p.finish(w, r, pg, http.StatusOK)
}

func (p *Preferences) optOut(r *http.Request, source string) audience.OptOut {
	return audience.OptOut{Source: source, IP: clientIP(r), UserAgent: r.UserAgent(), TextVersion: "preference-centre-v1"}
}

func (p *Preferences) fail(w http.ResponseWriter, pg page, what string, err error) {
	p.Logger.Error("preference centre: "+what, "stream", pg.Stream, "err", err)
	pg.Error = pg.T("Something went wrong. Please try again.")
	pg.Lists, pg.Message = nil, ""
	p.render(w, http.StatusInternalServerError, pg)
}

func (p *Preferences) render(w http.ResponseWriter, code int, pg page) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Language", pg.Lang)
	w.WriteHeader(code)
	if err := prefsPage.Execute(w, pg); err != nil {
		p.Logger.Warn("preference centre: render", "err", err)
	}
}

// anySubscribed reports whether a list still mails the address.
func anySubscribed(l []audience.Subscription) bool {
	return slices.ContainsFunc(l, func(s audience.Subscription) bool { return s.Subscribed })
}

var prefsPage = template.Must(template.New("prefs").Funcs(template.FuncMap{"anySubscribed": anySubscribed}).Parse(`<!doctype html>
<html lang="{{.Lang}}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{call .T "Email preferences"}}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:36em;margin:2em auto;padding:0 1em;line-height:1.5;color:#1a1a1a;background:#fff}
fieldset{border:1px solid #767676;border-radius:4px;margin:1em 0;padding:.5em 1em}
label{display:block;padding:.35em 0}input[type=checkbox]{width:1.2em;height:1.2em;vertical-align:middle;margin-right:.5em}
button{font:inherit;padding:.5em 1.2em;border-radius:4px;border:2px solid #0b4f8a;background:#0b4f8a;color:#fff;cursor:pointer}
button.secondary{background:#fff;color:#0b4f8a}button:focus-visible,input:focus-visible{outline:3px solid #c05600;outline-offset:2px}
.status{border-left:4px solid #1d6f2f;padding:.5em 1em;background:#eef7f0}.error{border-left:4px solid #a4161a;padding:.5em 1em;background:#fbeaea}
.muted{color:#4a4a4a}
</style></head>
<body><main>
<h1>{{call .T "Email preferences"}}</h1>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{else}}
<p>{{call .T "Preferences for %s" .Address}}</p>
{{if .Message}}<p class="status" role="status">{{.Message}}</p>{{end}}
{{if not .Done}}
{{if .Lists}}
<form method="post" action="/preferences/{{.Token}}">
<fieldset><legend>{{call .T "Lists you receive"}}</legend>
{{if anySubscribed .Lists}}<p class="muted" id="hint">{{call .T "Uncheck a list to stop receiving it, then save."}}</p>{{end}}
{{range .Lists}}{{if .Subscribed}}<label><input type="checkbox" name="keep" value="{{.AudienceID}}" checked aria-describedby="hint">{{.Audience}}</label>
{{else}}<p class="muted">{{.Audience}}: {{call $.T "Not receiving (%s)" (call $.T (printf "%s" .Status))}}</p>
{{end}}{{end}}</fieldset>
{{if anySubscribed .Lists}}<button type="submit" name="action" value="save">{{call .T "Save preferences"}}</button>{{end}}
</form>{{else}}<p>{{call .T "You are not on any list."}}</p>{{end}}
<form method="post" action="/preferences/{{.Token}}">
<h2>{{call .T "Unsubscribe from everything"}}</h2>
<p>{{call .T "Stop all %s mail to %s." (call .T .Stream) .Address}}</p>
<button class="secondary" type="submit" name="action" value="all">{{call .T "Unsubscribe from all"}}</button>
</form>{{end}}
<p class="muted"><small>{{call .T "Your choices are recorded with the time of the change."}}</small></p>
{{end}}
</main></body></html>
`))
