package bounce

import (
	"bytes"
	_ "embed"
	"fmt"
	"os"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"github.com/BurntSushi/toml"
)

//go:embed rules.toml
var defaultRulesTOML []byte

// Classification is the verdict on one failure: a reason from sisimai's
// vocabulary, the DSN status code, whether the address itself is bad (hard)
// and the SMTP reply code it came with.
type Classification struct {
	// Reason is one of userunknown, mailboxfull, blocked, ... (see rules.toml).
	Reason string `json:"reason"`
	// Status is the DSN status code ("5.1.1"). When the reply carried none,
	// it is a class-level code ("5.0.911"-style internal codes are used by
	// Parse when the report gives nothing better).
	Status string `json:"status"`
	// Hard is true when the recipient address should not be tried again.
	Hard bool `json:"hard"`
	// Code is the SMTP reply code (0 when unknown).
	Code int `json:"code"`
}

// ruleFile is the TOML shape of rules.toml and of operator rule files.
type ruleFile struct {
	Hard            []string          `toml:"hard"`
	HardIfPermanent []string          `toml:"hard_if_permanent"`
	Weak            []string          `toml:"weak"`
	Status          map[string]string `toml:"status"`
	Reason          []reasonSpec      `toml:"reason"`
	Hint            []hintSpec        `toml:"hint"`
	Rhost           []rhostSpec       `toml:"rhost"`
	// Category maps an MTA's own bounce category field
	// (X-PowerMTA-BounceCategory) to a reason.
	Category map[string]string `toml:"category"`
}

// hintSpec decides the reason from a header of the report itself.
type hintSpec struct {
	Header   string `toml:"header"`
	Contains string `toml:"contains"`
	Reason   string `toml:"reason"`
}

type reasonSpec struct {
	Name               string   `toml:"name"`
	Pass               int      `toml:"pass"`
	StatusProbe        bool     `toml:"status_probe"`
	StatusUnless       []string `toml:"status_unless"`
	StatusRequiresText []string `toml:"status_requires_text"`
	UnlessStatus       []string `toml:"unless_status"`
	Unless             []string `toml:"unless"`
	NotCommands        []string `toml:"not_commands"`
	NeverCommands      []string `toml:"never_commands"`
	TextCommands       []string `toml:"text_commands"`
	TextWhen           string   `toml:"text_when"`
	Commands           []string `toml:"commands"`
	ReplyCodes         []int    `toml:"reply_codes"`
	Also               []string `toml:"also"`
	Exclude            []string `toml:"exclude"`
	Phrases            []string `toml:"phrases"`
	Patterns           []string `toml:"patterns"`
	// YieldToStatus makes a pass-0 rule give way to a specific status code
	// (one without a ".0" part that the [status] table names), as
	// sisimai's decoders let such a code overrule their own verdict.
	YieldToStatus bool `toml:"yield_to_status"`
}

// reasonRule is a compiled reasonSpec.
type reasonRule struct {
	reasonSpec
	id       int // index into fact.memo
	patterns []*regexp.Regexp
	need     [][]string // need[i]: literals every match of patterns[i] contains
}

// maxRules bounds the compiled rules (the memo array in fact).
const maxRules = 128

// Rules is a compiled, immutable rule set. The zero value is not usable;
// get one from DefaultRules or LoadRules. Safe for concurrent use.
type Rules struct {
	operator []*reasonRule // operator rules, tried first (text only)
	pass     [4][]*reasonRule
	byName   map[string]*reasonRule
	status   map[string]string
	hard     map[string]bool
	hardPerm map[string]bool
	weak     map[string]bool
	hints    []hintSpec
	category map[string]string // bounce category -> reason
	rhosts   []*rhostRule      // provider rules; operator ones first
	nrules   int
}

var defaultRules = sync.OnceValues(func() (*Rules, error) {
	return compileRules(defaultRulesTOML, nil)
})

// DefaultRules returns the rule set embedded from rules.toml.
func DefaultRules() *Rules {
	r, err := defaultRules()
	if err != nil {
		// The embedded file is tested; failing here is a build defect.
		panic(fmt.Sprintf("bounce: embedded rules.toml: %v", err))
	}
	return r
}

// LoadRules reads an operator rule file and merges it over the defaults:
// its [[reason]] entries are tried before every default rule, its [status]
// entries override the default status table, and its hard lists are added.
func LoadRules(path string) (*Rules, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bounce: read rules: %w", err)
	}
	r, err := compileRules(defaultRulesTOML, b)
	if err != nil {
		return nil, fmt.Errorf("bounce: rules %s: %w", path, err)
	}
	return r, nil
}

func decodeRuleFile(b []byte) (*ruleFile, error) {
	var f ruleFile
	md, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&f)
	if err != nil {
		return nil, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, fmt.Errorf("unknown key %q", und[0].String())
	}
	return &f, nil
}

func compileRule(s reasonSpec) (*reasonRule, error) {
	if !knownReasons[s.Name] {
		return nil, fmt.Errorf("unknown reason %q", s.Name)
	}
	rr := &reasonRule{reasonSpec: s}
	for i, p := range rr.Phrases {
		rr.Phrases[i] = strings.ToLower(p)
	}
	for _, p := range s.Patterns {
		re, need, err := compileLowerNeed(p)
		if err != nil {
			return nil, fmt.Errorf("reason %s: pattern %q: %w", s.Name, p, err)
		}
		rr.patterns = append(rr.patterns, re)
		rr.need = append(rr.need, need)
	}
	return rr, nil
}

// compileLowerNeed is compileLower, also returning the literals every
// match of the pattern contains (the literal parts of a top-level
// concatenation, as in "mailbox .*full"): a text without one of them
// cannot match, so textMatch skips the regexp for it with a
// strings.Contains.
func compileLowerNeed(p string) (*regexp.Regexp, []string, error) {
	re, err := syntax.Parse(p, syntax.Perl|syntax.FoldCase)
	if err != nil {
		return nil, nil, err
	}
	lowerLiterals(re)
	c, err := regexp.Compile(re.String())
	if err != nil {
		return nil, nil, err
	}
	return c, requiredLiterals(re), nil
}

// requiredLiterals returns literals that every match of re contains.
func requiredLiterals(re *syntax.Regexp) []string {
	lit := func(r *syntax.Regexp) (string, bool) {
		return string(r.Rune), r.Op == syntax.OpLiteral && r.Flags&syntax.FoldCase == 0 && len(r.Rune) > 0
	}
	switch re.Op {
	case syntax.OpCapture:
		return requiredLiterals(re.Sub[0])
	case syntax.OpLiteral:
		if s, ok := lit(re); ok {
			return []string{s}
		}
	case syntax.OpConcat:
		var out []string
		for _, sub := range re.Sub {
			if s, ok := lit(sub); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// compileLower compiles a pattern that is matched against lower-cased text:
// its literals are lower-cased (not the whole source, which would turn \S
// into \s) and it is compiled without (?i), so that the regexp engine can
// still search for a literal prefix instead of stepping byte by byte.
func compileLower(p string) (*regexp.Regexp, error) {
	re, err := syntax.Parse(p, syntax.Perl|syntax.FoldCase)
	if err != nil {
		return nil, err
	}
	lowerLiterals(re)
	return regexp.Compile(re.String())
}

// lowerLiterals lower-cases the case-folded literals of re in place and
// drops their FoldCase flag.
func lowerLiterals(re *syntax.Regexp) {
	if re.Op == syntax.OpLiteral && re.Flags&syntax.FoldCase != 0 {
		for i, r := range re.Rune {
			re.Rune[i] = unicode.ToLower(r)
		}
		re.Flags &^= syntax.FoldCase
	}
	for _, sub := range re.Sub {
		lowerLiterals(sub)
	}
}

func compileRules(base, extra []byte) (*Rules, error) {
	bf, err := decodeRuleFile(base)
	if err != nil {
		return nil, err
	}
	r := &Rules{
		byName:   map[string]*reasonRule{},
		status:   map[string]string{},
		hard:     map[string]bool{},
		hardPerm: map[string]bool{},
		weak:     map[string]bool{},
		category: map[string]string{},
	}
	apply := func(f *ruleFile, operator bool) error {
		for _, h := range f.Hard {
			r.hard[h] = true
		}
		for _, h := range f.HardIfPermanent {
			r.hardPerm[h] = true
		}
		for _, w := range f.Weak {
			r.weak[w] = true
		}
		for _, h := range f.Hint {
			if !knownReasons[h.Reason] || h.Header == "" || h.Contains == "" {
				return fmt.Errorf("hint %q: needs header, contains and a known reason", h.Header)
			}
			h.Contains = strings.ToLower(h.Contains)
			r.hints = append(r.hints, h)
		}
		var rhosts []*rhostRule
		for _, s := range f.Rhost {
			rh, err := compileRhost(s)
			if err != nil {
				return err
			}
			rhosts = append(rhosts, rh)
		}
		r.rhosts = append(rhosts, r.rhosts...)
		for k, v := range f.Category {
			if !knownReasons[v] {
				return fmt.Errorf("category %s: unknown reason %q", k, v)
			}
			r.category[strings.ToLower(k)] = v
		}
		for k, v := range f.Status {
			if !knownReasons[v] {
				return fmt.Errorf("status %s: unknown reason %q", k, v)
			}
			r.status[k] = v
		}
		for _, s := range f.Reason {
			rr, err := compileRule(s)
			if err != nil {
				return err
			}
			if r.nrules >= maxRules {
				return fmt.Errorf("more than %d reason rules", maxRules)
			}
			rr.id = r.nrules
			r.nrules++
			if operator {
				r.operator = append(r.operator, rr)
				continue
			}
			if s.Pass < 0 || s.Pass > 3 {
				return fmt.Errorf("reason %s: pass %d not in 0..3", s.Name, s.Pass)
			}
			r.pass[s.Pass] = append(r.pass[s.Pass], rr)
			if s.Pass > 0 {
				r.byName[s.Name] = rr
			}
		}
		return nil
	}
	if err := apply(bf, false); err != nil {
		return nil, err
	}
	if extra != nil {
		ef, err := decodeRuleFile(extra)
		if err != nil {
			return nil, err
		}
		if err := apply(ef, true); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// knownReasons is sisimai's reason vocabulary (issue 4).
var knownReasons = map[string]bool{
	"userunknown": true, "hostunknown": true, "mailboxfull": true, "filtered": true, "rejected": true,
	"blocked": true, "spamdetected": true, "policyviolation": true, "expired": true, "suspend": true,
	"hasmoved": true, "mesgtoobig": true, "exceedlimit": true, "norelaying": true, "notaccept": true,
	"networkerror": true, "systemerror": true, "systemfull": true, "toomanyconn": true, "speeding": true,
	"securityerror": true, "authfailure": true, "requireptr": true, "badreputation": true,
	"contenterror": true, "virusdetected": true, "syntaxerror": true, "notcompliantrfc": true,
	"failedstarttls": true, "mailererror": true, "onhold": true, "feedback": true, "vacation": true,
	"delivered": true, "undefined": true,
}

// internalCode is the last part of the class-level status code Parse uses
// when a report names no status (sisimai's convention, e.g. 5.0.911).
var internalCode = map[string]string{
	"authfailure": "926", "badreputation": "975", "blocked": "971", "contenterror": "960",
	"exceedlimit": "923", "expired": "947", "failedstarttls": "976", "filtered": "910",
	"hasmoved": "916", "hostunknown": "912", "mailboxfull": "922", "mailererror": "939",
	"mesgtoobig": "934", "networkerror": "944", "norelaying": "909", "notaccept": "932",
	"notcompliantrfc": "974", "onhold": "901", "policyviolation": "972", "rejected": "918",
	"requireptr": "973", "securityerror": "970", "spamdetected": "980", "speeding": "946",
	"suspend": "921", "systemerror": "930", "systemfull": "931", "syntaxerror": "902",
	"toomanyconn": "945", "userunknown": "911", "undefined": "900", "virusdetected": "981",
}

// fact is everything known about one failure when classifying it.
type fact struct {
	code     int    // SMTP reply code
	status   string // enhanced status code
	text     string // lower-cased diagnostic text
	command  string // SMTP command answered: CONN EHLO HELO MAIL RCPT DATA STARTTLS
	action   string // DSN Action (failed, delayed, ...)
	diagType string // DSN diagnostic type (SMTP, X-UNIX, ...)
	sync     bool   // a reply seen in our own SMTP session
	hint     string // reason decided from the report's headers
	rhost    string // remote MTA host name, if known
	lhost    string // reporting MTA host name, if known
	domain   string // the recipient's domain, if known
	delay    bool   // the report is a delay notice (delivery still retried)
	memo     [maxRules]int8
}

var (
	reStatus  = regexp.MustCompile(`\b([245])\.(\d{1,3})\.(\d{1,3})\b`)
	reReply   = regexp.MustCompile(`(?:^|[\s:(\[="'<])([245][0-5]\d)(?:[ -]|$)`)
	reCommand = regexp.MustCompile(`(?i)(?:in reply to|after|while sending|during|response to|for|smtp command:?|command:)\s+(?:the\s+)?(rcpt to|rcpt|mail from|mail|end of data|data|helo|ehlo|starttls|initial connection|connect)\b`)
)

// Classify classifies a synchronous SMTP reply (code, enhanced status code
// and text) with the default rules.
func Classify(code int, enhanced, text string) Classification {
	return DefaultRules().Classify(code, enhanced, text)
}

// Classify classifies a synchronous SMTP reply with r.
func (r *Rules) Classify(code int, enhanced, text string) Classification {
	text = text[:min(len(text), maxDiagText)]
	f := fact{code: code, status: enhanced, text: strings.ToLower(text), sync: true}
	if f.status == "" || !validStatus(f.status) {
		f.status = findStatus(text)
	}
	if f.code == 0 {
		f.code = findReply(text)
	}
	f.command = findCommand(text)
	return r.finish(f)
}

// finish classifies f and fills in status and hard/soft.
func (r *Rules) finish(f fact) Classification {
	f.text = f.text[:min(len(f.text), maxDiagText)]
	reason := r.reason(&f)
	c := Classification{Reason: reason, Status: f.status, Code: f.code}
	temporary := strings.HasPrefix(f.status, "4") || (f.status == "" && f.code >= 400 && f.code < 500)
	if c.Status == "" {
		class := "5"
		if temporary || f.action == "delayed" || f.delay {
			class = "4"
		}
		switch {
		case reason == "delivered":
			c.Status = "2.0.0"
		case internalCode[reason] != "":
			c.Status = class + ".0." + internalCode[reason]
		}
	}
	switch {
	case r.hard[reason]:
		c.Hard = true
	case r.hardPerm[reason]:
		c.Hard = !temporary
	}
	return c
}

// finishMemo classifies the recipients of one report naming many of them
// (at least manyRecipients): their diagnostics are usually the same
// reply with each one's own address in it, so the recipient's address is
// taken out of the text it classifies (it is no evidence of the reason)
// and the classification of an equal fact is reused. Its key is the fact
// with the recipient's domain reduced to what the rules read of it: the
// provider it names (Rules.provider), so the result is a function of it.
type finishMemo struct {
	r     *Rules
	m     map[fact]Classification
	facts map[string]textFacts
	// providers caches the rhost rule name a recipient domain names.
	providers map[string]string
	// The last text with its recipient taken out (textFacts and finish
	// both need it for the same recipient, one after the other).
	lastText, lastRcpt, lastOut string
}

// without returns text with every occurrence of rcpt (lower-cased) taken
// out, reusing the last answer.
func (m *finishMemo) without(text, rcpt string) string {
	if text == m.lastText && rcpt == m.lastRcpt && m.lastOut != "" {
		return m.lastOut
	}
	out := strings.ReplaceAll(text, strings.ToLower(rcpt), "")
	m.lastText, m.lastRcpt, m.lastOut = text, rcpt, out
	return out
}

// textFacts are what a text-only report's diagnostic says by itself.
type textFacts struct {
	status  string
	code    int
	command string
}

// textFacts returns get(text) for the lower-cased diagnostic text of
// recipient rcpt: with a memo, of the text without the recipient's
// address, once per distinct text.
func (m *finishMemo) textFacts(text, rcpt string, get func(string) (string, int, string)) (string, int, string) {
	if m == nil {
		return get(text)
	}
	text = m.without(text, rcpt)
	tf, ok := m.facts[text]
	if !ok {
		tf.status, tf.code, tf.command = get(text)
		m.facts[text] = tf
	}
	return tf.status, tf.code, tf.command
}

// newFinishMemo returns a memo for a report about n recipients, or nil
// (finish each one on its own) for fewer than manyRecipients.
func (r *Rules) newFinishMemo(n int) *finishMemo {
	if n < manyRecipients {
		return nil
	}
	return &finishMemo{r: r, m: map[fact]Classification{}, facts: map[string]textFacts{}, providers: map[string]string{}}
}

// finish is r.finish(f) for recipient rcpt, memoised when m is not nil.
func (m *finishMemo) finish(r *Rules, f fact, rcpt string) Classification {
	if m == nil {
		return r.finish(f)
	}
	if rcpt != "" {
		f.text = m.without(f.text, rcpt)
	}
	key := f
	p, ok := m.providers[f.domain]
	if !ok {
		for _, rh := range r.rhosts {
			if hostMatches(f.domain, rh.Hosts, true) {
				p = rh.Name
				break
			}
		}
		m.providers[f.domain] = p
	}
	key.domain = p
	if c, ok := m.m[key]; ok {
		return c
	}
	c := r.finish(f)
	m.m[key] = c
	return c
}

// specificStatus reports whether s is a status code that names a cause
// (none of its parts after the class is 0, as in 5.1.1 but not 5.7.0).
func specificStatus(s string) bool {
	return s != "" && !strings.Contains(s, ".0")
}

func validStatus(s string) bool {
	m := reStatus.FindString(s)
	return m != "" && m == s
}

// findStatus returns the first enhanced status code in text that is not
// part of a longer dotted number (an IP address or version), if any.
func findStatus(text string) string {
	for _, loc := range reStatus.FindAllStringIndex(text, 8) {
		if loc[0] > 0 && (text[loc[0]-1] == '.' || isDigit(text[loc[0]-1])) {
			continue
		}
		if loc[1]+1 < len(text) && text[loc[1]] == '.' && isDigit(text[loc[1]+1]) {
			continue
		}
		return text[loc[0]:loc[1]]
	}
	return ""
}

// textFailureStatus is findStatus skipping success codes (2.x.x) when the
// text also has a failure code.
func textFailureStatus(text string) string {
	first := findStatus(text)
	if !strings.HasPrefix(first, "2.") {
		return first
	}
	for _, loc := range reStatus.FindAllStringIndex(text, 64) {
		st := findStatus(text[max(loc[0]-1, 0):min(loc[1]+2, len(text))])
		if st != "" && st[0] != '2' {
			return st
		}
	}
	return first
}

// textFailureReply is findReply skipping 2xx and 3xx replies when the text
// also has a 4xx or 5xx one.
func textFailureReply(text string) int {
	first := findReply(text)
	if first == 0 || first >= 400 {
		return first
	}
	for _, m := range reReply.FindAllStringSubmatch(text, 64) {
		if n, _ := strconv.Atoi(m[1]); n >= 400 {
			return n
		}
	}
	return first
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// reCodeWord finds a reply code that a report labels as one
// ("ResponseCode 421,", "ERROR_CODE :550", "reply code=452").
var reCodeWord = regexp.MustCompile(`(?i)(?:response|reply|error|smtp)[ _-]?code[ \t]*[:=]?[ \t]*([245][0-5]\d)\b`)

// findReply returns the first SMTP reply code in text, if any.
func findReply(text string) int {
	m := reReply.FindStringSubmatch(text)
	if m == nil && strings.Contains(asciiLower(text), "code") {
		m = reCodeWord.FindStringSubmatch(text)
	}
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// commandWords are the words reCommand ends on, and reCommandWindow the
// most text before one of them that a reCommand match can span.
var commandWords = [...]string{"rcpt", "mail", "data", "helo", "ehlo", "starttls", "connect"}

const reCommandWindow = 48

// commandWordsAt returns the offsets of commandWords in lower, in order:
// for each word its non-overlapping occurrences from the left (as
// repeated strings.Index calls find them). leads holds every occurrence
// of commandLeads as [start, end) offsets, in order of start. Both come
// from one pass over lower that reads four bytes at each offset and
// looks them up in a small perfect hash of the words' first four bytes
// (the words and leads differ in them, so at most one starts at an
// offset).
func commandWordsAt(lower string) (at []int, leads [][2]int) {
	var next [len(commandWords)]int // where word k may next occur
	for i := 0; ; i++ {
		if i = nextCommandWord(lower, i); i < 0 {
			break
		}
		if lower[i:i+3] == "for" {
			leads = append(leads, [2]int{i, i + 3})
			continue
		}
		e := &cmdHash[cmdSlot(lower[i:i+4])]
		if len(e.word) > 4 && !strings.HasPrefix(lower[i:], e.word) {
			continue
		}
		if e.lead {
			leads = append(leads, [2]int{i, i + len(e.word)})
			continue
		}
		if i < next[e.k] {
			continue
		}
		at = append(at, i)
		next[e.k] = i + len(e.word)
	}
	return at, leads
}

// nextCommandWord returns the first offset from i where lower has "for"
// or the first four bytes of a command word or lead, or -1: the tight
// loop of commandWordsAt, with nothing but the text and the offset live.
func nextCommandWord(lower string, i int) int {
	mul := cmdHashMul
	for ; i+4 <= len(lower); i++ {
		w4 := lower[i : i+4]
		v := uint32(w4[0]) | uint32(w4[1])<<8 | uint32(w4[2])<<16 | uint32(w4[3])<<24
		if v&0xFFFFFF == forWord || cmdHash[(v*mul)>>(32-cmdHashBits)].key == v && v != 0 {
			return i
		}
	}
	if n := len(lower); i < n && n >= 3 && i <= n-3 && lower[n-3:] == "for" {
		return n - 3
	}
	return -1
}

// cmdSlot is the slot of cmdHash for four bytes.
func cmdSlot(w4 string) uint32 {
	v := uint32(w4[0]) | uint32(w4[1])<<8 | uint32(w4[2])<<16 | uint32(w4[3])<<24
	return (v * cmdHashMul) >> (32 - cmdHashBits)
}

// cmdHashEntry is one slot of the hash of command words and leads.
type cmdHashEntry struct {
	key  uint32 // the word's first four bytes, little-endian
	word string
	k    int  // index in commandWords
	lead bool // word is one of commandLeads
}

const cmdHashBits = 6

// forWord is "for", the only lead shorter than four bytes.
const forWord = 'f' | 'o'<<8 | 'r'<<16

// cmdHash and cmdHashMul are the perfect hash of commandWords and the
// leads (but "for"): the first multiplier that puts every word's first
// four bytes in a slot of its own.
var cmdHash, cmdHashMul = func() (t [1 << cmdHashBits]cmdHashEntry, mul uint32) {
	key := func(w string) uint32 { return uint32(w[0]) | uint32(w[1])<<8 | uint32(w[2])<<16 | uint32(w[3])<<24 }
	for mul = 0x9E3779B1; ; mul += 2 {
		t = [1 << cmdHashBits]cmdHashEntry{}
		ok := true
		put := func(w string, k int, lead bool) {
			e := &t[(key(w)*mul)>>(32-cmdHashBits)]
			if e.word != "" {
				ok = false
			}
			*e = cmdHashEntry{key(w), w, k, lead}
		}
		for k, w := range commandWords {
			put(w, k, false)
		}
		for _, w := range commandLeads {
			if w != "for" {
				put(w, 0, true)
			}
		}
		if ok {
			return t, mul
		}
	}
}()

// findCommand names the SMTP command a reply text says it answered: an
// explicit "in reply to X command" phrase, else the latest stage named by
// an upper-case command word. It runs its regular expressions only on
// short windows around the command words, so its cost is linear in the
// text with a small constant.
func findCommand(text string) string { return findCommandLower(text, asciiLower(text)) }

// findCommandLower is findCommand with asciiLower(text) given.
func findCommandLower(text, lower string) string {
	at, leads := commandWordsAt(lower)
	var m []string
	lo := 0 // the first lead that can start at or after from
	for _, i := range at {
		from, end := max(0, i-reCommandWindow), min(len(text), i+len("connection")+2)
		for lo < len(leads) && leads[lo][0] < from {
			lo++
		}
		if !leadWithin(leads[lo:], i) {
			continue
		}
		if m = reCommand.FindStringSubmatch(text[from:end]); m != nil {
			break
		}
	}
	if m == nil {
		best := -1
		for _, i := range at {
			for st, w := range upperStages {
				if strings.HasPrefix(text[i:], w) && (i == 0 || !isWordByte(text[i-1])) &&
					(i+len(w) == len(text) || !isWordByte(text[i+len(w)])) && st > best {
					best = st
				}
			}
		}
		if best >= 0 {
			return upperNames[best]
		}
		return ""
	}
	switch strings.ToLower(m[1]) {
	case "rcpt to", "rcpt":
		return "RCPT"
	case "mail from", "mail":
		return "MAIL"
	case "end of data", "data":
		return "DATA"
	case "helo":
		return "HELO"
	case "ehlo":
		return "EHLO"
	case "starttls":
		return "STARTTLS"
	}
	return "CONN"
}

// commandLeads are the words one of which precedes the command in every
// reCommand match.
var commandLeads = []string{"reply to", "after", "sending", "during", "response to", "for", "command"}

// leadWithin reports whether one of leads (all starting at or after the
// window's start) ends by i: hasCommandLead of the window before i.
func leadWithin(leads [][2]int, i int) bool {
	for _, l := range leads {
		if l[0] >= i {
			break
		}
		if l[1] <= i {
			return true
		}
	}
	return false
}

func hasCommandLead(lower string) bool {
	for _, w := range commandLeads {
		if strings.Contains(lower, w) {
			return true
		}
	}
	return false
}

// isWordByte reports the bytes that may not touch an upper-case command
// word as MTAs quote them ("SMTP:RCPT host ...", "[RCPT_TO]", "In: DATA").
func isWordByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '@' || c == '.'
}

// upperStages orders upper-case command words by SMTP stage; upperNames
// are the command names they stand for.
var (
	upperStages = []string{"HELO", "EHLO", "STARTTLS", "MAIL F", "RCPT", "DATA"}
	upperNames  = []string{"HELO", "EHLO", "STARTTLS", "MAIL", "RCPT", "DATA"}
)

// textMatch reports whether the lower-cased text matches rule rr itself
// (phrases, patterns), ignoring command constraints.
func (rr *reasonRule) textMatch(text string) bool {
	if text == "" {
		return false
	}
	for _, x := range rr.Exclude {
		if strings.Contains(text, x) {
			return false
		}
	}
	for _, p := range rr.Phrases {
		if strings.Contains(text, p) {
			return true
		}
	}
patterns:
	for i, re := range rr.patterns {
		for _, n := range rr.need[i] {
			if !strings.Contains(text, n) {
				continue patterns
			}
		}
		if re.MatchString(text) {
			return true
		}
	}
	return false
}

// textIs reports whether f's text matches the rule named name (memoised).
func (r *Rules) textIs(name string, f *fact) bool {
	rr := r.byName[name]
	return rr != nil && r.matches(rr, f)
}

// matches is rr.textMatch(f.text), memoised in f.
func (r *Rules) matches(rr *reasonRule, f *fact) bool {
	switch f.memo[rr.id] {
	case 1:
		return true
	case 2:
		return false
	}
	ok := rr.textMatch(f.text)
	f.memo[rr.id] = 2
	if ok {
		f.memo[rr.id] = 1
	}
	return ok
}

// probe is one first-pass check of rule rr against f.
func (r *Rules) probe(rr *reasonRule, f *fact, statusReason string) bool {
	for _, u := range rr.Unless {
		if r.textIs(u, f) {
			return false
		}
	}
	if slices.Contains(rr.UnlessStatus, statusReason) {
		return false
	}
	if f.command != "" && slices.Contains(rr.NeverCommands, f.command) {
		return false
	}
	if slices.Contains(rr.ReplyCodes, f.code) || (f.command != "" && slices.Contains(rr.Commands, f.command)) {
		return true
	}
	if rr.StatusProbe && statusReason == rr.Name {
		ok := true
		for _, u := range rr.StatusUnless {
			if r.textIs(u, f) {
				ok = false
			}
		}
		if len(rr.StatusRequiresText) > 0 {
			ok = false
			for _, n := range rr.StatusRequiresText {
				if r.textIs(n, f) {
					ok = true
				}
			}
		}
		if ok {
			return true
		}
	}
	if f.command != "" && slices.Contains(rr.NotCommands, f.command) {
		return false
	}
	// A synchronous reply of unknown stage is most likely one to RCPT.
	if len(rr.TextCommands) > 0 && !slices.Contains(rr.TextCommands, f.command) && !(f.sync && f.command == "") {
		return false
	}
	if rr.TextWhen == "weak_or_mail" {
		weak := statusReason == "" || r.weak[statusReason]
		if !(f.command == "MAIL" || (f.command == "DATA" && statusReason != "userunknown") || weak) {
			return false
		}
	}
	if r.matches(rr, f) {
		return true
	}
	for _, a := range rr.Also {
		if r.textIs(a, f) {
			return true
		}
	}
	return false
}

// reason runs the classification passes described in rules.toml.
func (r *Rules) reason(f *fact) string {
	if strings.HasPrefix(f.status, "2.") || f.action == "delivered" || (f.sync && f.status == "" && f.code >= 200 && f.code < 300) {
		return "delivered"
	}
	if f.hint != "" {
		return f.hint
	}
	f.text = joinContinuations(f.text)
	for _, rr := range r.operator {
		if rr.textMatch(f.text) || slices.Contains(rr.ReplyCodes, f.code) {
			return rr.Name
		}
	}
	if rh := r.rhostReason(f); rh != "" {
		return rh
	}
	// Pass 0: phrases that decide the reason whatever the status says
	// (what sisimai's per-MTA decoders set explicitly).
	for _, rr := range r.pass[0] {
		if f.command != "" && slices.Contains(rr.NotCommands, f.command) {
			continue
		}
		if rr.YieldToStatus && specificStatus(f.status) && r.status[f.status] != "" {
			continue
		}
		if r.matches(rr, f) {
			return rr.Name
		}
	}
	statusReason := r.status[f.status]
	if strings.HasPrefix(strings.ToUpper(f.diagType), "X-UNIX") && r.textIs("mailboxfull", f) {
		// A local delivery agent's quota message (sisimai tries
		// mailboxfull first for non-SMTP diagnostics too).
		return "mailboxfull"
	}
	if !strings.HasPrefix(strings.ToUpper(f.diagType), "X-UNIX") {
		for _, rr := range r.pass[1] {
			if r.probe(rr, f, statusReason) {
				return rr.Name
			}
		}
	}
	if statusReason != "" && !r.weak[statusReason] && (f.diagType == "" || strings.EqualFold(f.diagType, "smtp")) {
		return statusReason
	}
	for _, rr := range r.pass[2] {
		if f.command != "" && slices.Contains(rr.NotCommands, f.command) {
			continue
		}
		if r.matches(rr, f) || slices.Contains(rr.ReplyCodes, f.code) ||
			(f.command != "" && slices.Contains(rr.Commands, f.command)) {
			return rr.Name
		}
	}
	if statusReason != "" {
		return statusReason
	}
	if len(f.status) > 3 {
		switch f.status[2] {
		case '6':
			return "contenterror"
		case '7':
			return "securityerror"
		}
	}
	if strings.HasPrefix(strings.ToUpper(f.diagType), "X-UNIX") {
		return "mailererror"
	}
	if (f.code > 400 && f.code < 408) || (f.code > 500 && f.code < 508) {
		return "syntaxerror"
	}
	if f.action == "delayed" || f.action == "expired" {
		return "expired"
	}
	if f.command == "EHLO" || f.command == "HELO" {
		return "blocked"
	}
	for _, rr := range r.pass[3] {
		if rr.textMatch(f.text) {
			return rr.Name
		}
	}
	if strings.TrimSpace(f.text) != "" {
		return "onhold"
	}
	return "undefined"
}

// delayPhrases say that a report is a warning about a delivery still
// being retried (RFC 3464 "delayed" reports without the DSN fields):
// Gmail's "THIS IS A WARNING MESSAGE ONLY", Zoho's "Message will be
// retried", Exim's "has not yet been delivered", sendmail's "Warning:
// could not send message for past ...", Postfix's "delayed mail".
var delayPhrases = []string{"warning message only", "will be retried", "will continue trying",
	"will keep trying", "still trying", "has not yet been delivered", "delivery is delayed",
	"delivery has been delayed", "warning: could not send message"}

// isDelayNotice reports whether a report with this subject and text is a
// delay notice.
func isDelayNotice(subject, lowerText string) bool {
	sub := strings.ToLower(subject)
	if strings.Contains(sub, "delay") || strings.HasPrefix(sub, "warning:") {
		return true
	}
	for _, p := range delayPhrases {
		if strings.Contains(lowerText, p) {
			return true
		}
	}
	return false
}

// hint returns the reason a [[hint]] assigns to a report with header h.
func (r *Rules) hint(h interface{ Get(string) string }) string {
	for _, hs := range r.hints {
		if strings.Contains(strings.ToLower(h.Get(hs.Header)), hs.Contains) {
			return hs.Reason
		}
	}
	return ""
}

var reContinuation = regexp.MustCompile(`\b([245]\d\d)-(?:[245]\.\d{1,3}\.\d{1,3}\s)?`)

// joinContinuations removes the "550-5.7.1 " prefixes of a multi-line
// reply that was folded into one line, so phrases split across its lines
// match again.
func joinContinuations(text string) string {
	if !hasReplyDash(text) {
		return text // reContinuation needs a "[245]dd-"
	}
	locs := reContinuation.FindAllStringSubmatchIndex(text, -1)
	if len(locs) == 0 {
		return text
	}
	code := text[locs[0][2]:locs[0][3]]
	var b strings.Builder
	last := 0
	for _, l := range locs {
		if text[l[2]:l[3]] != code || (l[0] > 0 && !isSpace(text[l[0]-1])) {
			continue
		}
		b.WriteString(text[last:l[0]])
		last = l[1]
	}
	b.WriteString(text[last:])
	return squash(b.String())
}

// hasReplyDash reports whether text has a '-' after a reply code
// ("550-"), which every reContinuation match starts with.
func hasReplyDash(text string) bool {
	for i := 0; ; i++ {
		j := strings.IndexByte(text[i:], '-')
		if j < 0 {
			return false
		}
		i += j
		if i >= 3 && strings.IndexByte("245", text[i-3]) >= 0 && isDigit(text[i-2]) && isDigit(text[i-1]) {
			return true
		}
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' }
