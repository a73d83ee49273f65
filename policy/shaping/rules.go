package shaping

import (
	"bytes"
	_ "embed"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/mta"
)

// defaultsTOML is policy/shaping/defaults.toml, read-only.
//
//go:embed defaults.toml
var defaultsTOML []byte

// Defaults returns the shipped rules and automation (defaults.toml), validated.
func Defaults() (config.ShapingConfig, error) {
	var c config.ShapingConfig
	md, err := toml.NewDecoder(bytes.NewReader(defaultsTOML)).Decode(&c)
	if err != nil {
		return c, fmt.Errorf("shaping: defaults.toml: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return c, fmt.Errorf("shaping: defaults.toml: unknown key %q", und[0].String())
	}
	if err := config.ValidateShaping(&c); err != nil {
		return c, fmt.Errorf("shaping: defaults.toml: %w", err)
	}
	return c, nil
}

// rule is a compiled ShapingRule.
type rule struct {
	cfg   config.ShapingRule
	tls   mta.TLSMode
	autos []*automation
	// perDomain keeps state per destination domain (the default rule).
	perDomain bool
}

// automation is a compiled AutomationRule.
type automation struct {
	cfg config.AutomationRule
	re  *regexp.Regexp
}

func (a *automation) matches(code int, enhanced, line string) bool {
	if a.cfg.Code != 0 && a.cfg.Code != code {
		return false
	}
	if a.cfg.Enhanced != "" && a.cfg.Enhanced != enhanced {
		return false
	}
	return a.re == nil || a.re.MatchString(line)
}

type suffixRule struct {
	suffix string // without leading dot
	r      *rule
}

// source is one compiled egress source.
type source struct {
	egress mta.Egress
	weight int
	warm   map[string][]int // rule name (or "*") -> daily caps; nil = none
	start  time.Time        // warm-up day 1 (UTC midnight)
}

// pool is a compiled egress pool.
type pool struct {
	name    string
	sources []*source
}

// ruleset is one immutable compiled configuration; Reload swaps it.
type ruleset struct {
	byName   map[string]*rule
	byDomain map[string]*rule
	suffixes []suffixRule // longest first
	def      *rule
	pools    map[string]*pool
	streams  map[string]*pool
	defPool  *pool
	sources  map[string]*source
	maxWait  time.Duration
}

// merge lays the user's section over the shipped defaults.
func merge(user config.ShapingConfig) (config.ShapingConfig, error) {
	if user.NoDefaults {
		return user, nil
	}
	def, err := Defaults()
	if err != nil {
		return user, err
	}
	out := user
	out.Rules = nil
	seen := map[string]bool{}
	for _, r := range user.Rules {
		seen[r.Name] = true
	}
	for _, r := range def.Rules {
		if !seen[r.Name] {
			out.Rules = append(out.Rules, r)
		}
	}
	out.Rules = append(out.Rules, user.Rules...)
	out.Automation = append(append([]config.AutomationRule(nil), def.Automation...), user.Automation...)
	return out, nil
}

func compile(user config.ShapingConfig, hostname string) (*ruleset, error) {
	if err := config.ValidateShaping(&user); err != nil {
		return nil, fmt.Errorf("shaping: %w", err)
	}
	cfg, err := merge(user)
	if err != nil {
		return nil, err
	}
	rs := &ruleset{
		byName:   map[string]*rule{},
		byDomain: map[string]*rule{},
		pools:    map[string]*pool{},
		streams:  map[string]*pool{},
		sources:  map[string]*source{},
		maxWait:  cfg.MaxWait.Duration,
	}
	if rs.maxWait <= 0 {
		rs.maxWait = 10 * time.Second
	}
	for _, rc := range cfg.Rules {
		r := &rule{cfg: rc, tls: tlsMode(rc.EnableTLS)}
		rs.byName[rc.Name] = r
		if rc.Name == "default" {
			r.perDomain = true
			rs.def = r
		}
		for _, d := range rc.Domains {
			rs.byDomain[d] = r
		}
		for _, s := range rc.MXSuffixes {
			rs.suffixes = append(rs.suffixes, suffixRule{suffix: strings.TrimPrefix(s, "."), r: r})
		}
	}
	sort.SliceStable(rs.suffixes, func(i, j int) bool { return len(rs.suffixes[i].suffix) > len(rs.suffixes[j].suffix) })
	if rs.def == nil {
		rs.def = &rule{cfg: config.ShapingRule{Name: "default", EnableTLS: config.TLSOpportunistic}, perDomain: true}
		rs.byName["default"] = rs.def
	}
	for i, ac := range cfg.Automation {
		a := &automation{cfg: ac}
		if ac.Regex != "" {
			a.re = regexp.MustCompile(ac.Regex) // validated above
		}
		if ac.Rule == "" || ac.Rule == "*" {
			for _, r := range rs.byName {
				r.autos = append(r.autos, a)
			}
			continue
		}
		r, ok := rs.byName[ac.Rule]
		if !ok {
			return nil, fmt.Errorf("shaping: automation[%d]: unknown rule %q", i, ac.Rule)
		}
		r.autos = append(r.autos, a)
	}
	warm := map[string]config.WarmupSchedule{}
	for _, w := range cfg.Warmup {
		warm[w.Name] = w
	}
	pools := cfg.Pools
	if len(pools) == 0 {
		pools = []config.EgressPool{{Name: "default", Sources: []config.EgressSource{{Name: "default", Weight: 1}}}}
	}
	for _, pc := range pools {
		p := &pool{name: pc.Name}
		for _, sc := range pc.Sources {
			s := &source{
				egress: mta.Egress{Name: sc.Name, LocalIP: sc.BindAddress, EHLO: sc.EHLO},
				weight: max(sc.Weight, 1),
			}
			if s.egress.EHLO == "" {
				s.egress.EHLO = hostname
			}
			if sc.Warmup != "" {
				s.warm = warm[sc.Warmup].Caps
				s.start, _ = time.Parse(time.DateOnly, sc.WarmupStart) // validated
			}
			p.sources = append(p.sources, s)
			rs.sources[sc.Name] = s
		}
		rs.pools[p.name] = p
		if rs.defPool == nil {
			rs.defPool = p
		}
	}
	if p, ok := rs.pools["default"]; ok {
		rs.defPool = p
	}
	for stream, pname := range cfg.Streams {
		rs.streams[stream] = rs.pools[pname]
	}
	return rs, nil
}

func tlsMode(s string) mta.TLSMode {
	switch s {
	case config.TLSRequired:
		return mta.TLSRequired
	case config.TLSDisabled:
		return mta.TLSDisabled
	}
	return mta.TLSOpportunistic
}

// match finds the rule for d: an exact domain rule, else the longest MX
// suffix, else the default rule. key is the shaping-state key: the rule
// name, or "default:<domain>" for the per-domain default rule.
func (rs *ruleset) match(d mta.Dest) (r *rule, key string) {
	if r, ok := rs.byDomain[d.Domain]; ok {
		return r, r.cfg.Name
	}
	if d.MXHost != "" {
		for _, s := range rs.suffixes {
			h := d.MXHost
			if strings.HasSuffix(h, s.suffix) && (len(h) == len(s.suffix) || h[len(h)-len(s.suffix)-1] == '.') {
				return s.r, s.r.cfg.Name
			}
		}
	}
	return rs.def, "default:" + d.Domain
}

// pool returns the egress pool of stream.
func (rs *ruleset) pool(stream string) *pool {
	if p := rs.streams[stream]; p != nil {
		return p
	}
	return rs.defPool
}

// warmCap returns today's cap for rule on src and when the day ends;
// capped is false when the source has no cap for the rule today.
func (src *source) warmCap(ruleName string, now time.Time) (limit int, dayEnd time.Time, capped bool) {
	if src == nil || src.warm == nil {
		return 0, time.Time{}, false
	}
	caps, ok := src.warm[ruleName]
	if !ok {
		caps, ok = src.warm["*"]
	}
	if !ok {
		return 0, time.Time{}, false
	}
	today := now.UTC().Truncate(24 * time.Hour)
	idx := int(today.Sub(src.start) / (24 * time.Hour))
	if idx < 0 {
		idx = 0
	}
	if idx >= len(caps) {
		return 0, time.Time{}, false
	}
	return caps[idx], today.Add(24 * time.Hour), true
}
