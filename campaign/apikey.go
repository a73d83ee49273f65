package campaign

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/emersion/go-message/mail"

	"github.com/petrel-mta/petrel/ingest"
	"github.com/petrel-mta/petrel/internal/httpapi"
)

// KeyError is a Spec.APIKey that names no key the campaign may send
// under (HTTP 400 unknown_api_key).
type KeyError struct{ Name string }

func (e *KeyError) Error() string {
	return fmt.Sprintf("campaign: api_key %q: no such API key", e.Name)
}

// sendingKey is the API key sp sends under (nil when it names none),
// with its current limits, after checking that they allow sp: its
// stream, and the From domain of sp and of every A/B variant. The check
// is ingest's own (ingest.CheckScope), the one Submit applies to every
// message the send injects, so what is refused here is what ingest would
// refuse: a *ingest.ScopeError (HTTP 403 stream_not_allowed or
// domain_not_allowed).
func (s *Service) sendingKey(ctx context.Context, sp Spec) (*httpapi.Key, error) {
	if sp.APIKey == "" {
		return nil, nil
	}
	if s.opts.Keys == nil {
		return nil, &KeyError{Name: sp.APIKey}
	}
	keys, err := s.opts.Keys(ctx)
	if err != nil {
		return nil, fmt.Errorf("campaign: api keys: %w", err)
	}
	var key *httpapi.Key
	for i := range keys {
		if keys[i].Name == sp.APIKey {
			key = &keys[i]
			break
		}
	}
	if key == nil {
		return nil, &KeyError{Name: sp.APIKey}
	}
	froms := []string{sp.From}
	if sp.AB != nil {
		for _, v := range sp.AB.Variants {
			froms = append(froms, variantSpec(sp, v).From)
		}
	}
	for _, f := range froms {
		a, err := mail.ParseAddress(f)
		if err != nil {
			return nil, &invalidError{fmt.Errorf("campaign: from %q: %w", f, err)}
		}
		env := ingest.Envelope{From: a.Address}
		env.LimitTo(*key)
		if err := ingest.CheckScope(env, sp.stream(), a.Address); err != nil {
			return nil, fmt.Errorf("campaign: api_key %s: %w", key.Name, err)
		}
	}
	return key, nil
}

// keyed is env with s's API key applied: its limits, which Submit
// enforces, and its name in the trace (as ingest's HTTP API records a
// key: "from api-key=NAME").
func (s *Send) keyed(env ingest.Envelope) ingest.Envelope {
	if s.Key != nil {
		env.LimitTo(*s.Key)
		env.Trace.Helo = "api-key=" + s.Key.Name
	}
	return env
}

// keyAPIError maps the API key refusals to HTTP answers; false when err
// is neither.
func keyAPIError(w http.ResponseWriter, err error) bool {
	var ke *KeyError
	var se *ingest.ScopeError
	switch {
	case errors.As(err, &ke):
		httpapi.WriteError(w, http.StatusBadRequest, "unknown_api_key", ke.Error())
	case errors.As(err, &se):
		httpapi.WriteError(w, http.StatusForbidden, se.Field+"_not_allowed", se.Error())
	default:
		return false
	}
	return true
}
