package verify

import (
	"net/netip"
	"time"
)

// Verdict is the overall answer for an address.
type Verdict string

// Verdicts.
const (
	// Deliverable: the MX accepted the address and the domain is not a
	// catch-all; nothing risky was found.
	Deliverable Verdict = "deliverable"
	// Risky: mail would probably be accepted but may not reach a person
	// (catch-all, full inbox, disposable, role account, likely typo).
	Risky Verdict = "risky"
	// Undeliverable: bad syntax, no such domain, no mail host, null MX,
	// or the MX said the mailbox does not exist or is disabled.
	Undeliverable Verdict = "undeliverable"
	// Unknown: the checks could not decide (DNS or SMTP temporary
	// failure, greylisting, timeouts, probes blocked).
	Unknown Verdict = "unknown"
)

// Bucket is the bulk-result bucket of a verdict: "valid" (deliverable),
// "invalid" (undeliverable) or "risky" (risky and unknown).
func (v Verdict) Bucket() string {
	switch v {
	case Deliverable:
		return "valid"
	case Undeliverable:
		return "invalid"
	}
	return "risky"
}

// Reason codes, stable for API clients (see README.md).
const (
	RInvalidSyntax       = "invalid_syntax"
	RAddressLiteral      = "address_literal"
	RDomainNotFound      = "domain_not_found"
	RDNSTemporary        = "dns_temporary_failure"
	RNullMX              = "null_mx"
	RNoMailHost          = "no_mail_host"
	RMXUnresolvable      = "mx_unresolvable"
	RAccepted            = "accepted"
	RMailboxNotFound     = "mailbox_not_found"
	RMailboxDisabled     = "mailbox_disabled"
	RMailboxFull         = "mailbox_full"
	RRejected            = "rejected"
	RUnclassified        = "unclassified_rejection"
	RGreylisted          = "greylisted"
	RTemporaryFailure    = "smtp_temporary_failure"
	RSMTPUnreachable     = "smtp_unreachable"
	RSMTPTimeout         = "smtp_timeout"
	RProbeBlocked        = "probe_blocked"
	RSMTPUTF8Unsupported = "smtputf8_unsupported"
	RSMTPNotChecked      = "smtp_not_checked"
	RCatchAll            = "catch_all"
	RDisposable          = "disposable"
	RRoleAccount         = "role_account"
	RPossibleTypo        = "possible_typo"
)

// Stage statuses.
const (
	StatusOK            = "ok"
	StatusSkipped       = "skipped"
	StatusInvalid       = "invalid"
	StatusExists        = "exists"
	StatusNotFound      = "not_found"
	StatusTemporary     = "temporary"
	StatusLiteral       = "literal"
	StatusImplicit      = "implicit"
	StatusNullMX        = "null_mx"
	StatusNoMailHost    = "no_mail_host"
	StatusUnresolvable  = "unresolvable"
	StatusAccepted      = "accepted"
	StatusRejected      = "rejected"
	StatusUnreachable   = "unreachable"
	StatusTimeout       = "timeout"
	StatusBlocked       = "blocked"
	StatusError         = "error"
	StatusNotSupported  = "smtputf8_unsupported"
	StatusNotConfigured = "disabled"
)

// Result is the outcome of verifying one address. Its JSON form is the
// stable API documented in README.md.
type Result struct {
	// Address is the input as given.
	Address string `json:"address"`
	// Normalized is the canonical form (empty when the syntax is invalid).
	Normalized string  `json:"normalized"`
	Verdict    Verdict `json:"verdict"`
	// Reasons are the reason codes that led to the verdict, most
	// important first.
	Reasons []string `json:"reasons"`
	Flags   Flags    `json:"flags"`
	// Suggestion is a likely intended domain ("gmail.com" for
	// "gmial.com"), or "".
	Suggestion string `json:"suggestion,omitempty"`
	Stages     Stages `json:"stages"`
	// Cached reports that the result came from the per-address cache.
	Cached    bool      `json:"cached"`
	CheckedAt time.Time `json:"checked_at"`
}

// Flags are the risk flags.
type Flags struct {
	Disposable   bool `json:"disposable"`
	Role         bool `json:"role"`
	FreeProvider bool `json:"free_provider"`
	CatchAll     bool `json:"catch_all"`
	FullInbox    bool `json:"full_inbox"`
	Disabled     bool `json:"disabled"`
}

// Stages records each stage's own result.
type Stages struct {
	Syntax SyntaxStage `json:"syntax"`
	Domain DomainStage `json:"domain"`
	MX     MXStage     `json:"mx"`
	SMTP   SMTPStage   `json:"smtp"`
}

// SyntaxStage is stage 1.
type SyntaxStage struct {
	Valid bool `json:"valid"`
	// Parsed is the parsed address when Valid.
	Parsed *Address `json:"parsed,omitempty"`
	// Error is the SyntaxError reason code when not Valid.
	Error  string `json:"error,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// DomainStage is stage 2: exists, not_found (NXDOMAIN), temporary
// (SERVFAIL, timeout), literal or skipped.
type DomainStage struct {
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// MXStage is stage 3: ok, implicit (A/AAAA fallback), null_mx,
// no_mail_host, unresolvable, temporary or skipped.
type MXStage struct {
	Status string   `json:"status"`
	Hosts  []MXHost `json:"hosts,omitempty"`
	Detail string   `json:"detail,omitempty"`
}

// MXHost is one mail host of a domain, best preference first.
type MXHost struct {
	Host       string       `json:"host"`
	Preference uint16       `json:"preference"`
	IPs        []netip.Addr `json:"ips"`
}

// SMTPStage is stage 4: accepted, rejected, temporary, unreachable,
// timeout, blocked, error, smtputf8_unsupported, disabled or skipped.
type SMTPStage struct {
	Status string `json:"status"`
	// Host is the MX host that answered.
	Host     string `json:"host,omitempty"`
	Code     int    `json:"code,omitempty"`
	Enhanced string `json:"enhanced,omitempty"`
	Message  string `json:"message,omitempty"`
	// Category is bounce's classification of a non-2xx reply.
	Category string `json:"category,omitempty"`
	// Attempts counts RCPTs for this address (greylist retries).
	Attempts int `json:"attempts,omitempty"`
	// CatchAll is the random-address test's outcome when it ran.
	CatchAll *bool  `json:"catch_all,omitempty"`
	Detail   string `json:"detail,omitempty"`
}
