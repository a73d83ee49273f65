package main

import (
	"context"
	"log/slog"
)

// componentHandler keeps a log line's "component" attribute single: a
// package that names its own component on a logger petreld already named
// (ingest's "ingest.smtp", queue's "pebble" under "queue", policy's
// "suppression" under "policy") replaces the outer name instead of
// adding a second key. The innermost, most specific name wins. Inside a
// group (WithGroup) attributes pass through unchanged.
type componentHandler struct {
	inner     slog.Handler
	component string
	grouped   bool
}

// Enabled implements slog.Handler.
func (h *componentHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

// WithAttrs implements slog.Handler.
func (h *componentHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if h.grouped {
		return &componentHandler{inner: h.inner.WithAttrs(as), grouped: true}
	}
	c := h.component
	rest := make([]slog.Attr, 0, len(as))
	for _, a := range as {
		if a.Key == "component" {
			c = a.Value.String()
			continue
		}
		rest = append(rest, a)
	}
	return &componentHandler{inner: h.inner.WithAttrs(rest), component: c}
}

// WithGroup implements slog.Handler: the component so far is written
// before the group opens.
func (h *componentHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	inner := h.inner
	if !h.grouped && h.component != "" {
		inner = inner.WithAttrs([]slog.Attr{slog.String("component", h.component)})
	}
	return &componentHandler{inner: inner.WithGroup(name), grouped: true}
}

// Handle implements slog.Handler.
func (h *componentHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.grouped {
		return h.inner.Handle(ctx, r)
	}
	c := h.component
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "component" {
			c = a.Value.String()
		}
		return true
	})
	if c == "" {
		return h.inner.Handle(ctx, r)
	}
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	nr.AddAttrs(slog.String("component", c))
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "component" {
			nr.AddAttrs(a)
		}
		return true
	})
	return h.inner.Handle(ctx, nr)
}
