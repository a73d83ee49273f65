package shaping

import (
	"time"

	"github.com/petrel-mta/petrel/mta"
)

// pauseRetry is the Until of a pause refusal: delivery defers the
// recipients on its retry schedule; the pause itself lasts until
// ResumeStream.
const pauseRetry = time.Minute

// PausedStream is one stream stopped by PauseStream.
type PausedStream struct {
	Stream string `json:"stream"`
	Reason string `json:"reason"`
}

// PauseStream stops all sending of stream: until ResumeStream,
// AcquireConn, TryAcquireConn and AcquireMessage refuse its destinations
// with a deferring (never bouncing) *mta.PolicyError whose reason is
// "stream <stream> paused <reason>". Other streams are unaffected. The
// pause is in memory: whoever decides it (events' alarms) persists it and
// pauses again after a restart. It is the stream-wide counterpart of the
// automation's per-destination suspend, and survives Reload.
func (s *Shaper) PauseStream(stream, reason string) {
	stream = streamName(stream)
	s.pauseMu.Lock()
	defer s.pauseMu.Unlock()
	old := s.paused.Load()
	next := make(map[string]string, len(*old)+1)
	for k, v := range *old {
		next[k] = v
	}
	next[stream] = reason
	s.paused.Store(&next)
}

// ResumeStream lifts PauseStream's pause of stream and reports whether it
// was paused.
func (s *Shaper) ResumeStream(stream string) bool {
	stream = streamName(stream)
	s.pauseMu.Lock()
	defer s.pauseMu.Unlock()
	old := s.paused.Load()
	if _, ok := (*old)[stream]; !ok {
		return false
	}
	next := make(map[string]string, len(*old))
	for k, v := range *old {
		if k != stream {
			next[k] = v
		}
	}
	s.paused.Store(&next)
	return true
}

// StreamPaused reports whether stream is paused and why.
func (s *Shaper) StreamPaused(stream string) (reason string, ok bool) {
	reason, ok = (*s.paused.Load())[streamName(stream)]
	return reason, ok
}

// pauseRefusal is the refusal for d's stream when it is paused, else nil.
func (s *Shaper) pauseRefusal(d mta.Dest) error {
	m := *s.paused.Load()
	if len(m) == 0 {
		return nil
	}
	stream := streamOf(d)
	reason, ok := m[stream]
	if !ok {
		return nil
	}
	return &mta.PolicyError{Reason: "stream " + stream + " paused " + reason, Until: time.Now().Add(pauseRetry)}
}

// Egresses returns the names of the egress sources of the pool stream
// sends from under the rules in force (after a Reload, the reloaded
// ones): [shaping.streams], else the pool "default", else the first
// pool; without pools the single source "default".
func (s *Shaper) Egresses(stream string) []string {
	p := s.rs.Load().pool(streamName(stream))
	names := make([]string, 0, len(p.sources))
	for _, src := range p.sources {
		names = append(names, src.egress.Name)
	}
	return names
}

// streamName is the shaping state name of a stream ("" is "default").
func streamName(stream string) string {
	return streamOf(mta.Dest{Stream: stream})
}
