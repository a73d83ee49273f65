package dkim

import (
	"bytes"
	"crypto"
	"fmt"
	"io"
	"log/slog"
	"net/mail"
	"net/textproto"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/internal/eightbit"
	"github.com/petrel-mta/petrel/mta"
)

// Key is one loaded signing key.
type Key struct {
	Domain    string
	Selector  string
	Algorithm string
	Signer    crypto.Signer
}

// oversigned headers are listed once more than they occur, so a header of
// that name added later (or a second From) breaks the signature
// (RFC 6376 sections 5.4.2 and 8.15).
var oversigned = []string{
	"From", "Subject", "To", "Cc", "Date", "Message-ID", "Reply-To",
	"MIME-Version", "Content-Type", "List-Unsubscribe", "List-Unsubscribe-Post",
}

// signedIfPresent headers are signed as often as they occur (RFC 6376
// section 5.4.1's list, less the oversigned ones and Received/trace).
var signedIfPresent = []string{
	"Sender", "In-Reply-To", "References", "Content-Transfer-Encoding",
	"Content-ID", "Content-Description", "Content-Disposition",
	"Resent-Date", "Resent-From", "Resent-Sender", "Resent-To", "Resent-Cc",
	"Resent-Message-ID", "List-Id", "List-Help", "List-Subscribe",
	"List-Post", "List-Owner", "List-Archive", "Feedback-ID",
}

// Keyring holds the signing keys by domain and signs messages. Reload
// swaps the whole set atomically; Sign is safe for concurrent use.
type Keyring struct {
	dir           string
	cfg           []config.DKIMKey
	defaultDomain string
	log           *slog.Logger
	keys          atomic.Pointer[map[string][]Key]
}

// NewKeyring loads the configured keys plus every <dir>/<domain>/<sel>.key
// file. defaultDomain (may be "") signs mail whose From domain has no key.
func NewKeyring(dir string, cfg []config.DKIMKey, defaultDomain string, log *slog.Logger) (*Keyring, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k := &Keyring{dir: dir, cfg: cfg, defaultDomain: strings.ToLower(defaultDomain), log: log}
	if err := k.Reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// Reload re-reads every key; on error the previous set stays in use.
func (k *Keyring) Reload() error {
	m := map[string][]Key{}
	seen := map[string]bool{}
	add := func(domain, selector, path, wantAlgo string) error {
		signer, algo, err := LoadKey(path)
		if err != nil {
			return fmt.Errorf("dkim: key %s: %w", path, err)
		}
		if wantAlgo != "" && wantAlgo != algo {
			return fmt.Errorf("dkim: key %s is %s, configured as %s", path, algo, wantAlgo)
		}
		domain = strings.ToLower(strings.TrimSuffix(domain, "."))
		id := domain + "/" + selector
		if seen[id] {
			return nil
		}
		seen[id] = true
		m[domain] = append(m[domain], Key{Domain: domain, Selector: selector, Algorithm: algo, Signer: signer})
		return nil
	}
	for _, c := range k.cfg {
		if err := add(c.Domain, c.Selector, c.KeyFile, c.Algorithm); err != nil {
			return err
		}
	}
	if k.dir != "" {
		files, err := filepath.Glob(filepath.Join(k.dir, "*", "*.key"))
		if err != nil {
			return fmt.Errorf("dkim: %w", err)
		}
		for _, f := range files {
			domain := filepath.Base(filepath.Dir(f))
			sel := strings.TrimSuffix(filepath.Base(f), ".key")
			if !ValidDomain(domain) || !ValidSelector(sel) {
				k.log.Warn("ignoring DKIM key file with an invalid domain or selector name", "path", f)
				continue
			}
			if err := add(domain, sel, f, ""); err != nil {
				return err
			}
		}
	}
	for d := range m {
		// RSA first: receivers that only verify the first signature
		// still get one they understand.
		sort.SliceStable(m[d], func(i, j int) bool {
			return m[d][i].Algorithm == AlgoRSA && m[d][j].Algorithm != AlgoRSA
		})
	}
	k.keys.Store(&m)
	return nil
}

// Keys returns the keys of exactly domain.
func (k *Keyring) Keys(domain string) []Key {
	return (*k.keys.Load())[strings.ToLower(domain)]
}

// KeysFor returns the keys that sign mail from fromDomain: its own, else
// the nearest parent domain's, else the default domain's.
func (k *Keyring) KeysFor(fromDomain string) []Key {
	m := *k.keys.Load()
	d := strings.ToLower(strings.TrimSuffix(fromDomain, "."))
	for d != "" {
		if ks := m[d]; len(ks) > 0 {
			return ks
		}
		i := strings.IndexByte(d, '.')
		if i < 0 {
			break
		}
		d = d[i+1:]
	}
	return m[k.defaultDomain]
}

// HeaderKeys returns the h= list for a message with header h: oversigned
// names once more than they occur, the others as often as they occur.
func HeaderKeys(h mail.Header) []string {
	return headerKeys(func(name string) int { return len(h[textproto.CanonicalMIMEHeaderKey(name)]) })
}

// headerKeys is HeaderKeys over a count of fields by name.
func headerKeys(count func(name string) int) []string {
	keys := make([]string, 0, 24)
	for _, name := range oversigned {
		for i := count(name); i >= 0; i-- {
			keys = append(keys, name)
		}
	}
	for _, name := range signedIfPresent {
		for range count(name) {
			keys = append(keys, name)
		}
	}
	return keys
}

// Sign returns msg with a DKIM-Signature prepended for every key of its
// signing domain (see KeysFor), relaxed/relaxed, SHA-256. A message it
// signs whose body has 8-bit octets is first converted to 7-bit (see
// SignMessage). A message whose header does not parse, whose From cannot
// be parsed, or whose domain has no key, is returned unchanged with
// signed == false.
func (k *Keyring) Sign(msg []byte) (out []byte, signed bool, err error) {
	if len(*k.keys.Load()) == 0 {
		return msg, false, nil // no keys at all: skip parsing the message
	}
	if !bytes.Contains(msg, []byte("\n\r\n")) && !bytes.Contains(msg, []byte("\n\n")) {
		return msg, false, nil // no end of header: nothing well-formed to sign
	}
	m, err := mta.ParseMessage(msg)
	if err != nil {
		return msg, false, nil
	}
	signed, err = k.SignMessage(m)
	if err != nil || !signed {
		return msg, false, err
	}
	return m.Bytes(), true, nil
}

// SignMessage adds a DKIM-Signature to m (AddSignature) for every key of
// m.From's signing domain (see KeysFor), relaxed/relaxed, SHA-256,
// computed over m as it will be queued; it reuses m's header index
// instead of parsing the message again. A message whose body has 8-bit
// octets is first converted to 7-bit (eightbit.To7bit: quoted-printable
// or base64; RFC 6376 section 5.3), replacing m's content, so that no
// later conversion (delivery's for a next hop without 8BITMIME, or a
// relay's) breaks the signature; an unconvertible message is signed as it
// is. It reports false when m.From is empty, its domain has no key, or no
// empty line ends the header.
func (k *Keyring) SignMessage(m *mta.Message) (signed bool, err error) {
	at := strings.LastIndexByte(m.From, '@')
	if at < 0 || !m.HeaderEnded() {
		return false, nil // no end of header: nothing well-formed to sign
	}
	keys := k.KeysFor(m.From[at+1:])
	if len(keys) == 0 {
		return false, nil
	}
	if eightbit.BodyHas8bit(m.Raw()) {
		if c, err := eightbit.To7bit(m.Bytes()); err == nil {
			if cm, err := mta.ParseMessage(c); err == nil {
				cm.Sender, cm.Rcpts, cm.Stream, cm.From, cm.Generated = m.Sender, m.Rcpts, m.Stream, m.From, m.Generated
				*m = *cm
			}
		}
	}
	hk := headerKeys(m.Count)
	signers := make([]*dkim.Signer, 0, len(keys))
	ws := make([]io.Writer, 0, len(keys))
	for _, key := range keys {
		s, err := dkim.NewSigner(&dkim.SignOptions{
			Domain:                 key.Domain,
			Selector:               key.Selector,
			Signer:                 key.Signer,
			Hash:                   crypto.SHA256,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			HeaderKeys:             hk,
		})
		if err != nil {
			for _, o := range signers {
				o.Close()
			}
			return false, fmt.Errorf("dkim: %w", err)
		}
		signers = append(signers, s)
		ws = append(ws, s)
	}
	_, werr := m.WriteTo(io.MultiWriter(ws...))
	var sigs []string
	for _, s := range signers {
		if err := s.Close(); err != nil && werr == nil {
			werr = err
		}
		if werr == nil {
			sigs = append(sigs, s.Signature())
		}
	}
	if werr != nil {
		return false, fmt.Errorf("dkim: sign: %w", werr)
	}
	for _, s := range sigs {
		m.AddSignature(s)
	}
	return true, nil
}

// parseHeader reads the header block of msg.
func parseHeader(msg []byte) (mail.Header, error) {
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		return nil, fmt.Errorf("dkim: header: %w", err)
	}
	return m.Header, nil
}
