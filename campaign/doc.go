// Package campaign owns templates and campaigns: template content with
// %field% personalisation (Compile, Render), the plain-text alternative
// generated from HTML, MIME building with emersion/go-message
// (BuildMessage), and — as it grows — template versions, campaigns,
// schedules and the send engine, which hands every message to
// ingest's one entry point (ARCHITECTURE.md: campaign never bypasses
// ingest and never imports queue or delivery).
//
// Rendering is built for volume: Compile parses a template once into
// literal and placeholder segments; Render only concatenates, escaping
// each value for the part it lands in (HTML-escaped in HTML, control
// characters removed in the subject and preheader).
package campaign
