package domains

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/petrel-mta/petrel/policy/dkim"
)

// ErrUnknown is returned for a domain that is not registered.
var ErrUnknown = errors.New("domains: not a registered sending domain")

// Registry is the persistent set of sending domains and their last check
// results, kept in one JSON file written atomically. Reads are served from
// memory and are safe for concurrent use.
type Registry struct {
	path string
	mu   sync.RWMutex
	m    map[string]*Result // domain -> last result (Status "" = never checked)
}

// OpenRegistry loads (or starts) the registry file at path.
func OpenRegistry(path string) (*Registry, error) {
	r := &Registry{path: path, m: map[string]*Result{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("domains: %w", err)
	}
	var list []Result
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("domains: %s: %w", path, err)
	}
	for i := range list {
		r.m[list[i].Domain] = &list[i]
	}
	return r, nil
}

// Normalize lower-cases domain and validates it.
func Normalize(domain string) (string, error) {
	d := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(domain), "."))
	if !dkim.ValidDomain(d) {
		return "", fmt.Errorf("domains: %q is not a domain name", domain)
	}
	return d, nil
}

// Add registers domain (no-op if present) and persists the registry.
func (r *Registry) Add(domain string) (string, error) {
	d, err := Normalize(domain)
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.m[d]; ok {
		return d, nil
	}
	r.m[d] = &Result{Domain: d, Status: Unverified}
	if err := r.saveLocked(); err != nil {
		delete(r.m, d)
		return "", err
	}
	return d, nil
}

// Remove unregisters domain.
func (r *Registry) Remove(domain string) error {
	d, err := Normalize(domain)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old, ok := r.m[d]
	if !ok {
		return ErrUnknown
	}
	delete(r.m, d)
	if err := r.saveLocked(); err != nil {
		r.m[d] = old
		return err
	}
	return nil
}

// Get returns the last result of domain.
func (r *Registry) Get(domain string) (Result, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	res, ok := r.m[strings.ToLower(strings.TrimSuffix(domain, "."))]
	if !ok {
		return Result{}, false
	}
	return *res, true
}

// Domains lists the registered domains, sorted.
func (r *Registry) Domains() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.m))
	for d := range r.m {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// SetResult stores a check result of a registered domain and persists
// the registry. A result with temporary lookup errors keeps the previous
// status (DNS trouble must not flip a good domain to unverified) but
// records the checks.
func (r *Registry) SetResult(res Result) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, ok := r.m[res.Domain]
	if !ok {
		return ErrUnknown
	}
	for _, c := range res.Checks {
		if c.State == Error && old.Status != "" && !old.Checked.IsZero() {
			res.Status = old.Status
			break
		}
	}
	r.m[res.Domain] = &res
	if err := r.saveLocked(); err != nil {
		r.m[res.Domain] = old
		return err
	}
	return nil
}

func (r *Registry) saveLocked() error {
	list := make([]*Result, 0, len(r.m))
	for _, res := range r.m {
		list = append(list, res)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Domain < list[j].Domain })
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return fmt.Errorf("domains: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(r.path), 0o700); err != nil {
		return fmt.Errorf("domains: %w", err)
	}
	tmp := r.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("domains: %w", err)
	}
	_, werr := f.Write(data)
	if serr := f.Sync(); werr == nil {
		werr = serr
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("domains: write %s: %w", tmp, werr)
	}
	if err := os.Rename(tmp, r.path); err != nil {
		return fmt.Errorf("domains: %w", err)
	}
	return nil
}
