package bounce

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// rhostSpec is one [[rhost]] table of a rule file: reasons that only hold
// for replies from a given mailbox provider (sisimai's Rhost classes). A
// provider is recognised by a host suffix matched against the remote MTA,
// host names in the diagnostic text, the recipient's domain and the
// reporting MTA.
type rhostSpec struct {
	Name  string   `toml:"name"`
	Hosts []string `toml:"hosts"`
	// CodePattern is a regular expression with one capture group applied
	// to the lower-cased diagnostic; the captured text is looked up in
	// Codes (provider error labels such as "lpn007_416" or "ib607").
	CodePattern string            `toml:"code_pattern"`
	Codes       map[string]string `toml:"codes"`
	Rule        []rhostRuleSpec   `toml:"rule"`
}

// rhostRuleSpec is one [[rhost.rule]]: every condition given must hold.
type rhostRuleSpec struct {
	Reason     string   `toml:"reason"`
	Phrases    []string `toml:"phrases"`
	Status     []string `toml:"status"`
	Commands   []string `toml:"commands"`
	ReplyCodes []int    `toml:"reply_codes"`
}

// rhostRule is a compiled rhostSpec.
type rhostRule struct {
	rhostSpec
	code *regexp.Regexp
}

func compileRhost(s rhostSpec) (*rhostRule, error) {
	if s.Name == "" || len(s.Hosts) == 0 {
		return nil, fmt.Errorf("rhost %q: needs name and hosts", s.Name)
	}
	rr := &rhostRule{rhostSpec: s}
	for i, h := range rr.Hosts {
		rr.Hosts[i] = strings.ToLower(strings.TrimSpace(h))
	}
	if s.CodePattern != "" {
		re, err := regexp.Compile("(?i)" + s.CodePattern)
		if err != nil {
			return nil, fmt.Errorf("rhost %s: code_pattern: %w", s.Name, err)
		}
		if re.NumSubexp() != 1 {
			return nil, fmt.Errorf("rhost %s: code_pattern needs exactly one capture group", s.Name)
		}
		rr.code = re
	}
	for k, v := range s.Codes {
		if !knownReasons[v] && v != "" {
			return nil, fmt.Errorf("rhost %s: code %s: unknown reason %q", s.Name, k, v)
		}
	}
	for i := range rr.Rule {
		if !knownReasons[rr.Rule[i].Reason] {
			return nil, fmt.Errorf("rhost %s: unknown reason %q", s.Name, rr.Rule[i].Reason)
		}
		for j, p := range rr.Rule[i].Phrases {
			rr.Rule[i].Phrases[j] = strings.ToLower(p)
		}
	}
	return rr, nil
}

// hostMatches reports whether host (a host name or a mail domain) belongs
// to one of suffixes. A mail domain matches when a listed host lies in it
// ("ezweb.ne.jp" matches ".ezweb.ne.jp" and "lsean.ezweb.ne.jp").
func hostMatches(host string, suffixes []string, isDomain bool) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" {
		return false
	}
	for _, s := range suffixes {
		if strings.HasSuffix(host, s) && (s[0] == '.' || len(host) == len(s) || host[len(host)-len(s)-1] == '.') {
			return true
		}
		// "."+t ends with "."+host, without building either string.
		if t := strings.TrimPrefix(s, "."); isDomain && (t == host ||
			len(t) > len(host) && strings.HasSuffix(t, host) && t[len(t)-len(host)-1] == '.') {
			return true
		}
	}
	return false
}

var reHostName = regexp.MustCompile(`(?i)\b(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}\b`)

// provider returns the first rhost whose hosts match f.
func (r *Rules) provider(f *fact) *rhostRule {
	if len(r.rhosts) == 0 {
		return nil
	}
	for _, rh := range r.rhosts {
		if hostMatches(f.rhost, rh.Hosts, false) {
			return rh
		}
	}
	for _, rh := range r.rhosts {
		if hostMatches(f.domain, rh.Hosts, true) {
			return rh
		}
	}
	// Host names the diagnostic mentions ("host mx.example.jp[192.0.2.1] said").
	if f.rhost == "" {
		for _, h := range reHostName.FindAllString(f.text, 8) {
			for _, rh := range r.rhosts {
				if hostMatches(h, rh.Hosts, false) {
					return rh
				}
			}
		}
	}
	for _, rh := range r.rhosts {
		if hostMatches(f.lhost, rh.Hosts, false) {
			return rh
		}
	}
	return nil
}

// rhostReason applies the provider-specific rules to f ("" when none holds).
func (r *Rules) rhostReason(f *fact) string {
	rh := r.provider(f)
	if rh == nil || f.text == "" {
		return ""
	}
	if rh.code != nil {
		if ms := rh.code.FindAllStringSubmatch(f.text, -1); len(ms) > 0 {
			if reason := rh.Codes[ms[len(ms)-1][1]]; reason != "" {
				return reason
			}
		}
	}
	for _, ru := range rh.Rule {
		if len(ru.Status) > 0 && !slices.Contains(ru.Status, f.status) {
			continue
		}
		if len(ru.Commands) > 0 && !slices.Contains(ru.Commands, f.command) {
			continue
		}
		if len(ru.ReplyCodes) > 0 && !slices.Contains(ru.ReplyCodes, f.code) {
			continue
		}
		if len(ru.Phrases) > 0 && !slices.ContainsFunc(ru.Phrases, func(p string) bool { return strings.Contains(f.text, p) }) {
			continue
		}
		return ru.Reason
	}
	return ""
}
