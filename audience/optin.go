package audience

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strconv"
	"strings"
	"time"

	gomail "github.com/emersion/go-message/mail"

	"github.com/petrel-mta/petrel/ingest"
	"github.com/petrel-mta/petrel/internal/poll"
)

// Double opt-in: a new contact of an audience with double_opt_in is
// pending; the Confirmer mails it a confirmation through ingest (the
// transactional stream) carrying a signed, expiring link, and only the
// POST behind that link (ConfirmHandler) makes it active and appends the
// grant, with the IP, user agent and time, to its consent ledger.

var optInPart = schemaPart{name: "optin", stmts: []string{
	`CREATE TABLE optin_settings (
		audience_id BIGINT PRIMARY KEY REFERENCES audiences(id) ON DELETE CASCADE,
		from_addr TEXT NOT NULL,
		from_name TEXT NOT NULL DEFAULT '',
		subject TEXT NOT NULL,
		body TEXT NOT NULL,
		purpose TEXT NOT NULL,
		consent_text TEXT NOT NULL DEFAULT '')`,
	// The outbox: a contact that becomes pending (inserted so, or set so)
	// gets a row here in the same transaction, from a trigger, so the
	// confirmer reads a short table instead of scanning every pending
	// contact (most never confirm) each time it polls.
	`CREATE TABLE optin_outbox (contact_id BIGINT PRIMARY KEY REFERENCES contacts(id) ON DELETE CASCADE)`,
	// One row per contact mailed (or found unmailable); sends counts the
	// confirmations, part of the idempotency key, so a resend after a
	// crash between the enqueue and this row is a no-op in the spool
	// while a contact set pending again later gets a new mail.
	`CREATE TABLE optin_sends (
		contact_id BIGINT PRIMARY KEY REFERENCES contacts(id) ON DELETE CASCADE,
		sends BIGINT NOT NULL DEFAULT 1,
		queue_id TEXT NOT NULL DEFAULT '',
		error TEXT NOT NULL DEFAULT '',
		sent_at BIGINT NOT NULL,
		expires_at BIGINT NOT NULL)`,
	// Contacts left pending before this schema part got no mail.
	`INSERT INTO optin_outbox (contact_id) SELECT id FROM contacts WHERE status = 'pending'`,
}, sqlite: []string{
	`CREATE TRIGGER contacts_optin_insert AFTER INSERT ON contacts WHEN NEW.status = 'pending'
		BEGIN INSERT INTO optin_outbox (contact_id) VALUES (NEW.id) ON CONFLICT DO NOTHING; END`,
	`CREATE TRIGGER contacts_optin_update AFTER UPDATE OF status ON contacts WHEN NEW.status = 'pending' AND OLD.status <> 'pending'
		BEGIN INSERT INTO optin_outbox (contact_id) VALUES (NEW.id) ON CONFLICT DO NOTHING; END`,
}, postgres: []string{
	`CREATE FUNCTION petrel_optin_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO optin_outbox (contact_id) VALUES (NEW.id) ON CONFLICT DO NOTHING; RETURN NULL; END $$`,
	`CREATE TRIGGER contacts_optin_insert AFTER INSERT ON contacts FOR EACH ROW WHEN (NEW.status = 'pending') EXECUTE FUNCTION petrel_optin_enqueue()`,
	`CREATE TRIGGER contacts_optin_update AFTER UPDATE OF status ON contacts FOR EACH ROW WHEN (NEW.status = 'pending' AND OLD.status <> 'pending') EXECUTE FUNCTION petrel_optin_enqueue()`,
}}

// OptInSettings is an audience's confirmation mail. Body is plain text
// and must contain %confirm_url%; %email% and %name% are replaced too.
type OptInSettings struct {
	From     string `json:"from"`
	FromName string `json:"from_name,omitempty"`
	Subject  string `json:"subject"`
	Body     string `json:"body"`
	// Purpose is the consent purpose the confirmation grants (default
	// "marketing").
	Purpose string `json:"purpose,omitempty"`
	// ConsentText is recorded in the ledger as the consent text or its
	// version.
	ConsentText string `json:"consent_text,omitempty"`
}

// DefaultOptIn is the confirmation an audience without settings sends,
// from the Confirmer's DefaultFrom.
var defaultOptIn = OptInSettings{
	Subject: "Please confirm your subscription",
	Body:    "Hello,\n\nplease confirm that you want to receive our mail by opening this link:\n\n%confirm_url%\n\nIf you did not ask for it, ignore this message: you will not be subscribed.\n",
	Purpose: "marketing",
}

func (o *OptInSettings) check() error {
	if _, err := mail.ParseAddress(o.From); err != nil || strings.ContainsAny(o.From, "<>\r\n") {
		return invalid("invalid_opt_in", "from %q is not an email address", o.From)
	}
	if o.Purpose == "" {
		o.Purpose = "marketing"
	}
	switch {
	case o.Subject == "" || len(o.Subject) > 998 || strings.ContainsAny(o.Subject, "\r\n"):
		return invalid("invalid_opt_in", "subject: want one line of 1 to 998 bytes")
	case !strings.Contains(o.Body, "%confirm_url%"):
		return invalid("invalid_opt_in", "body must contain %%confirm_url%%")
	case len(o.Body) > 64<<10 || len(o.FromName) > 256 || len(o.ConsentText) > maxText:
		return invalid("invalid_opt_in", "body, from_name or consent_text too long")
	case strings.ContainsAny(o.FromName, "\r\n"):
		return invalid("invalid_opt_in", "from_name: one line")
	case !ledgerWord.MatchString(o.Purpose):
		return invalid("invalid_opt_in", "purpose %q: want a lower-case word like marketing", o.Purpose)
	}
	return nil
}

// SetOptInSettings stores an audience's confirmation mail.
func (s *Store) SetOptInSettings(ctx context.Context, audience int64, o OptInSettings) (OptInSettings, error) {
	if err := o.check(); err != nil {
		return o, err
	}
	if _, err := s.Audience(ctx, audience); err != nil {
		return o, err
	}
	_, err := s.exec(ctx, s.db, `INSERT INTO optin_settings (audience_id, from_addr, from_name, subject, body, purpose, consent_text) VALUES (?,?,?,?,?,?,?)
		ON CONFLICT (audience_id) DO UPDATE SET from_addr = excluded.from_addr, from_name = excluded.from_name, subject = excluded.subject,
		body = excluded.body, purpose = excluded.purpose, consent_text = excluded.consent_text`,
		audience, o.From, o.FromName, o.Subject, o.Body, o.Purpose, o.ConsentText)
	if err != nil {
		return o, fmt.Errorf("audience: opt-in settings: %w", err)
	}
	return o, nil
}

// OptInSettings returns an audience's confirmation mail; ok is false when
// none was set (the Confirmer's default is used).
func (s *Store) OptInSettings(ctx context.Context, audience int64) (o OptInSettings, ok bool, err error) {
	return s.optInSettings(ctx, s.db, audience)
}

// optInSettings is OptInSettings read through db (a transaction reads
// through itself: see prepared).
func (s *Store) optInSettings(ctx context.Context, db dbtx, audience int64) (o OptInSettings, ok bool, err error) {
	err = db.QueryRowContext(ctx, s.q(`SELECT from_addr, from_name, subject, body, purpose, consent_text FROM optin_settings WHERE audience_id = ?`), audience).
		Scan(&o.From, &o.FromName, &o.Subject, &o.Body, &o.Purpose, &o.ConsentText)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := s.audience(ctx, db, audience); err != nil {
			return o, false, err
		}
		return defaultOptIn, false, nil
	}
	if err != nil {
		return o, false, fmt.Errorf("audience: opt-in settings: %w", err)
	}
	return o, true, nil
}

// Submitter is ingest's batch entry point (*ingest.Submitter).
type Submitter interface {
	SubmitBatch(ctx context.Context, subs []ingest.Submission) ([]ingest.Receipt, error)
}

// ConfirmerOptions configure a Confirmer.
type ConfirmerOptions struct {
	// Submitter queues the confirmations (required).
	Submitter Submitter
	// BaseURL is the public base of the confirm route:
	// <BaseURL>/confirm/<token> (required, http or https).
	BaseURL string
	// DefaultFrom sends the confirmation of an audience without settings.
	DefaultFrom string
	// TTL is how long a link works (default 7 days).
	TTL time.Duration
	// Interval is how often the outbox is polled (default 1 s).
	Interval time.Duration
	Logger   *slog.Logger
}

// Confirmer sends double opt-in confirmations and serves their links.
type Confirmer struct {
	s   *Store
	o   ConfirmerOptions
	key []byte
}

// NewConfirmer returns the double opt-in confirmer of s. Its token key
// lives in the database (meta "optin_key").
func (s *Store) NewConfirmer(ctx context.Context, o ConfirmerOptions) (*Confirmer, error) {
	if o.Submitter == nil {
		return nil, errors.New("audience: confirmer: no submitter")
	}
	if !strings.HasPrefix(o.BaseURL, "http://") && !strings.HasPrefix(o.BaseURL, "https://") {
		return nil, fmt.Errorf("audience: confirmer: base URL %q is not http(s)", o.BaseURL)
	}
	o.BaseURL = strings.TrimRight(o.BaseURL, "/")
	if o.TTL <= 0 {
		o.TTL = 7 * 24 * time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	key, err := s.metaSecret(ctx, "optin_key")
	if err != nil {
		return nil, err
	}
	return &Confirmer{s: s, o: o, key: key}, nil
}

// Run mails the confirmation of every pending contact of a double
// opt-in audience not mailed yet, until ctx ends.
func (c *Confirmer) Run(ctx context.Context) {
	poll.Run(ctx, c.o.Interval, nil, c.o.Logger, "audience: double opt-in confirmations", c.SendPending)
}

// confirmBatch is how many confirmations one step queues (one synced
// spool commit).
const confirmBatch = 100

type optInRecipient struct {
	id, audience int64
	email, key   string
	name         sql.NullString
	status       Status
	doubleOptIn  bool
	sends        int64 // confirmations queued before
}

// SendPending queues the confirmations of up to 100 contacts of the
// outbox and records them; it returns how many outbox rows it handled.
func (c *Confirmer) SendPending(ctx context.Context) (int, error) {
	s := c.s
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT c.id, c.audience_id, c.email, c.email_key, c.name, c.status, a.double_opt_in, COALESCE(o.sends, 0)
		FROM optin_outbox x JOIN contacts c ON c.id = x.contact_id JOIN audiences a ON a.id = c.audience_id LEFT JOIN optin_sends o ON o.contact_id = c.id
		ORDER BY x.contact_id LIMIT ?`), confirmBatch)
	if err != nil {
		return 0, fmt.Errorf("audience: pending confirmations: %w", err)
	}
	var all, rcpts []optInRecipient
	for rows.Next() {
		var r optInRecipient
		if err := rows.Scan(&r.id, &r.audience, &r.email, &r.key, &r.name, &r.status, &r.doubleOptIn, &r.sends); err != nil {
			rows.Close()
			return 0, fmt.Errorf("audience: pending confirmations: %w", err)
		}
		all = append(all, r)
		// Confirmed, unsubscribed or erased since, or a single opt-in
		// audience: nothing to mail, the row just leaves the outbox.
		if r.status == Pending && r.doubleOptIn {
			rcpts = append(rcpts, r)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("audience: pending confirmations: %w", err)
	}
	if len(all) == 0 {
		return 0, nil
	}
	now := s.opts.Now()
	exp := now.Add(c.o.TTL)
	settings := map[int64]OptInSettings{}
	subs := make([]ingest.Submission, 0, len(rcpts))
	idx := make([]int, 0, len(rcpts))
	errs := make([]string, len(rcpts))
	for i, r := range rcpts {
		set, ok := settings[r.audience]
		if !ok {
			var err error
			if set, _, err = s.OptInSettings(ctx, r.audience); err != nil {
				return 0, err
			}
			if set.From == "" {
				set.From = c.o.DefaultFrom
			}
			settings[r.audience] = set
		}
		msg, err := c.message(set, r, now, exp)
		if err != nil {
			errs[i] = err.Error()
			continue
		}
		subs = append(subs, ingest.Submission{Envelope: ingest.Envelope{
			From: set.From, Rcpts: []string{r.email}, Stream: "transactional", Source: "audience",
			IdempotencyKey: "optin:" + strconv.FormatInt(r.id, 10) + ":" + strconv.FormatInt(r.sends+1, 10) + ":" + r.key,
			Trace:          ingest.Trace{Helo: "double-opt-in", With: "audience"},
		}, Body: msg})
		idx = append(idx, i)
	}
	queued := make([]string, len(rcpts))
	if len(subs) > 0 {
		rcs, err := c.o.Submitter.SubmitBatch(ctx, subs)
		if err != nil {
			return 0, fmt.Errorf("audience: queue confirmations: %w", err)
		}
		for j, rc := range rcs {
			i := idx[j]
			if rc.Err != nil {
				errs[i] = rc.Err.Error()
				c.o.Logger.Warn("audience: confirmation not queued", "contact", rcpts[i].id, "err", rc.Err)
				continue
			}
			queued[i] = rc.ID
		}
	}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		for i, r := range rcpts {
			if _, err := s.exec(ctx, tx, `INSERT INTO optin_sends (contact_id, sends, queue_id, error, sent_at, expires_at) VALUES (?,1,?,?,?,?)
				ON CONFLICT (contact_id) DO UPDATE SET sends = optin_sends.sends + 1, queue_id = excluded.queue_id, error = excluded.error,
				sent_at = excluded.sent_at, expires_at = excluded.expires_at`,
				r.id, queued[i], errs[i], now.Unix(), exp.Unix()); err != nil {
				return fmt.Errorf("audience: record confirmation: %w", err)
			}
		}
		for _, r := range all {
			if _, err := s.exec(ctx, tx, `DELETE FROM optin_outbox WHERE contact_id = ?`, r.id); err != nil {
				return fmt.Errorf("audience: record confirmation: %w", err)
			}
		}
		return nil
	})
	return len(all), err
}

// message builds the confirmation for r.
func (c *Confirmer) message(set OptInSettings, r optInRecipient, now, exp time.Time) ([]byte, error) {
	if set.From == "" {
		return nil, errors.New("no sender: set the audience's opt-in settings")
	}
	link := c.o.BaseURL + "/confirm/" + c.token(r.id, r.key, exp)
	body := strings.NewReplacer("%confirm_url%", link, "%email%", r.email, "%name%", r.name.String).Replace(set.Body)
	var h gomail.Header
	h.SetAddressList("From", []*gomail.Address{{Name: set.FromName, Address: set.From}})
	h.SetAddressList("To", []*gomail.Address{{Name: r.name.String, Address: r.email}})
	h.SetSubject(set.Subject)
	h.SetDate(now)
	h.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	var buf bytes.Buffer
	w, err := gomail.CreateSingleInlineWriter(&buf, h)
	if err != nil {
		return nil, fmt.Errorf("build confirmation: %w", err)
	}
	if _, err := w.Write([]byte(strings.ReplaceAll(body, "\n", "\r\n"))); err != nil {
		return nil, fmt.Errorf("build confirmation: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("build confirmation: %w", err)
	}
	return buf.Bytes(), nil
}

// Token format: base64url(contact id, 8 bytes big-endian || expiry, unix
// seconds, 8 bytes) "." base64url(HMAC-SHA256(key, "optin" || payload ||
// email key)[:16]). The address's key is signed but not carried, so a
// token names no address and stops working if the contact's id is reused
// for another address.
const optInMAC = 16

func (c *Confirmer) mac(payload []byte, emailKey string) []byte {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte("optin"))
	m.Write(payload)
	m.Write([]byte(emailKey))
	return m.Sum(nil)[:optInMAC]
}

func (c *Confirmer) token(contact int64, emailKey string, exp time.Time) string {
	p := make([]byte, 16)
	binary.BigEndian.PutUint64(p, uint64(contact))
	binary.BigEndian.PutUint64(p[8:], uint64(exp.Unix()))
	return base64.RawURLEncoding.EncodeToString(p) + "." + base64.RawURLEncoding.EncodeToString(c.mac(p, emailKey))
}

// Token errors.
var (
	// ErrBadToken: malformed, forged, or for a contact that no longer
	// exists.
	ErrBadToken = errors.New("audience: invalid confirmation link")
	// ErrExpiredToken: the link's time is over.
	ErrExpiredToken = errors.New("audience: confirmation link expired")
)

// parseToken returns the contact id and expiry of tok, unverified.
func parseToken(tok string) (contact int64, exp time.Time, payload, mac []byte, err error) {
	if len(tok) > 128 {
		return 0, time.Time{}, nil, nil, ErrBadToken
	}
	ps, ms, ok := strings.Cut(tok, ".")
	if !ok {
		return 0, time.Time{}, nil, nil, ErrBadToken
	}
	// Strict: one token has one spelling (no ignored trailing bits).
	payload, err1 := base64.RawURLEncoding.Strict().DecodeString(ps)
	mac, err2 := base64.RawURLEncoding.Strict().DecodeString(ms)
	if err1 != nil || err2 != nil || len(payload) != 16 || len(mac) != optInMAC {
		return 0, time.Time{}, nil, nil, ErrBadToken
	}
	id := binary.BigEndian.Uint64(payload)
	if id == 0 || id > 1<<62 {
		return 0, time.Time{}, nil, nil, ErrBadToken
	}
	return int64(id), time.Unix(int64(binary.BigEndian.Uint64(payload[8:])), 0), payload, mac, nil
}

// Confirmation is what a confirm link is about.
type Confirmation struct {
	Contact  int64
	Audience string
	Email    string
	// Status is the contact's status (active once confirmed).
	Status Status
}

// check verifies tok against the database (the signature needs the
// contact's address key).
func (c *Confirmer) check(ctx context.Context, db dbtx, tok string) (Confirmation, int64, error) {
	id, exp, payload, mac, err := parseToken(tok)
	if err != nil {
		return Confirmation{}, 0, err
	}
	var cf Confirmation
	var key string
	var aid int64
	err = db.QueryRowContext(ctx, c.s.q(`SELECT c.email, c.email_key, c.status, c.audience_id, a.name FROM contacts c JOIN audiences a ON a.id = c.audience_id WHERE c.id = ?`), id).
		Scan(&cf.Email, &key, &cf.Status, &aid, &cf.Audience)
	if errors.Is(err, sql.ErrNoRows) {
		return cf, 0, ErrBadToken
	}
	if err != nil {
		return cf, 0, fmt.Errorf("audience: confirm: %w", err)
	}
	if !hmac.Equal(mac, c.mac(payload, key)) {
		return Confirmation{}, 0, ErrBadToken
	}
	cf.Contact = id
	if c.s.opts.Now().After(exp) && cf.Status == Pending {
		return cf, aid, ErrExpiredToken
	}
	return cf, aid, nil
}

// Lookup checks a confirmation link without changing anything (the GET
// page).
func (c *Confirmer) Lookup(ctx context.Context, tok string) (Confirmation, error) {
	cf, _, err := c.check(ctx, c.s.db, tok)
	return cf, err
}

// Confirm follows a confirmation link: a pending contact becomes active
// and its ledger gets the grant (source double_opt_in) with ip, user
// agent and time. A contact no longer pending (confirmed already,
// unsubscribed since) is left as it is.
func (c *Confirmer) Confirm(ctx context.Context, tok, ip, userAgent string) (Confirmation, error) {
	var cf Confirmation
	err := c.s.tx(ctx, func(tx *sql.Tx) error {
		var aid int64
		var err error
		cf, aid, err = c.check(ctx, tx, tok)
		if err != nil || cf.Status != Pending {
			return err
		}
		set, _, err := c.s.optInSettings(ctx, tx, aid)
		if err != nil {
			return err
		}
		now := c.s.now()
		if _, err := c.s.exec(ctx, tx, `UPDATE contacts SET status = 'active', updated_at = ? WHERE id = ? AND status = 'pending'`, now, cf.Contact); err != nil {
			return fmt.Errorf("audience: confirm: %w", err)
		}
		if len(userAgent) > 1024 {
			userAgent = userAgent[:1024]
		}
		if _, err := c.s.exec(ctx, tx, `INSERT INTO consent (contact_id, purpose, action, at, source, ip, user_agent, text_version) VALUES (?,?,?,?,?,?,?,?)`,
			cf.Contact, set.Purpose, string(Granted), now, "double_opt_in", ip, userAgent, set.ConsentText); err != nil {
			return fmt.Errorf("audience: confirm: %w", err)
		}
		cf.Status = Active
		return nil
	})
	return cf, err
}
