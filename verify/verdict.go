package verify

// decide derives the verdict and its reasons from the recorded stages and
// list flags, and sets the SMTP-derived flags (catch-all, full inbox,
// disabled). Precedence: a stage that proves the address dead wins
// (undeliverable); a stage that could not answer gives unknown; an
// accepted address is deliverable unless something makes it risky.
func decide(r *Result) (Verdict, []string) {
	st := &r.Stages
	if !st.Syntax.Valid {
		return Undeliverable, []string{RInvalidSyntax}
	}
	var verdict Verdict
	var reasons []string
	set := func(v Verdict, reason string) { verdict, reasons = v, append(reasons, reason) }
	switch st.Domain.Status {
	case StatusLiteral:
		set(Risky, RAddressLiteral)
	case StatusNotFound:
		set(Undeliverable, RDomainNotFound)
	case StatusTemporary:
		set(Unknown, RDNSTemporary)
	}
	if verdict == "" {
		switch st.MX.Status {
		case StatusNullMX:
			set(Undeliverable, RNullMX)
		case StatusNoMailHost:
			set(Undeliverable, RNoMailHost)
		case StatusUnresolvable:
			set(Undeliverable, RMXUnresolvable)
		case StatusTemporary:
			set(Unknown, RDNSTemporary)
		}
	}
	s := &st.SMTP
	if s.CatchAll != nil && *s.CatchAll {
		r.Flags.CatchAll = true
	}
	if verdict == "" {
		rep := reply{Code: s.Code, Enhanced: s.Enhanced, Text: s.Message}
		switch s.Status {
		case StatusNotConfigured, StatusSkipped, "":
			set(Unknown, RSMTPNotChecked)
		case StatusAccepted:
			if r.Flags.CatchAll {
				set(Risky, RCatchAll)
			} else {
				set(Deliverable, RAccepted)
			}
		case StatusRejected, StatusTemporary:
			v, reason := replyVerdict(rep)
			r.Flags.Disabled = reason == RMailboxDisabled
			r.Flags.FullInbox = reason == RMailboxFull
			set(v, reason)
		case StatusNotSupported:
			set(Undeliverable, RSMTPUTF8Unsupported)
		case StatusTimeout:
			set(Unknown, RSMTPTimeout)
		case StatusBlocked:
			set(Unknown, RProbeBlocked)
		default: // unreachable, error
			set(Unknown, RSMTPUnreachable)
		}
	}
	if verdict == Undeliverable {
		return verdict, reasons
	}
	risky := func(cond bool, reason string) {
		if cond {
			reasons = append(reasons, reason)
			if verdict == Deliverable || (verdict == Unknown && reasons[0] == RSMTPNotChecked) {
				verdict = Risky
			}
		}
	}
	risky(r.Flags.Disposable, RDisposable)
	risky(r.Flags.Role, RRoleAccount)
	risky(r.Suggestion != "", RPossibleTypo)
	return verdict, reasons
}
