// Package bounce owns the understanding of delivery failures: it
// classifies synchronous SMTP replies and asynchronous bounces into
// sisimai's reason vocabulary (Classify, Rules), parses inbound reports —
// RFC 3464 DSNs, the non-standard bounces real MTAs send, RFC 5965 ARF
// feedback reports and RFC 3834 auto-replies (Parse) —, encodes and
// verifies HMAC-signed VERP return paths (VERP), builds RFC 3464 DSNs for
// failed messages (BuildDSN; DSNHook hands each DSN to ingest's entry
// point, Submitter.Prepare, and returns it to the queue, which commits it
// with the bounce) and runs the SMTP listener for the bounce domain
// (Inbound, on internal/smtpserver like ingest's listener).
//
// Classification rules live in the embedded data file rules.toml;
// operators add their own with LoadRules. The package never sends mail and
// never writes the queue: callers act on what it reports (DSNs reach the
// queue only as OnFailure's answer).
package bounce
