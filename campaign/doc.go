// Package campaign owns templates and campaigns: template content with
// %field% personalisation (Compile, Render), the plain-text alternative
// generated from HTML, MIME building with emersion/go-message
// (BuildMessage), versioned templates (Templates), campaigns and their
// life (Service: draft, scheduled, sending, paused, sent, cancelled;
// schedules in IANA time zones and the scheduler; pinned template
// versions; test sends; A/B tests; the pre-send check with a real content
// filter, rspamd), and the send engine (Engine), which hands every message
// to ingest's one entry point (ARCHITECTURE.md: campaign never bypasses
// ingest and never imports queue or delivery).
//
// Its tables live in the ESP database next to the audience's (SQLite or
// PostgreSQL): campaigns, campaign_progress (durable cursors),
// campaign_tests, templates and template_versions; schema changes are
// the numbered migrations of schema.go.
//
// Rendering is built for volume: Compile parses a template once into
// literal and placeholder segments; Render only concatenates, escaping
// each value for the part it lands in (HTML-escaped in HTML, control
// characters removed in the subject and preheader).
package campaign
