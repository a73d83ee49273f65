// Package bench owns Petrel's benchmark harness: an SMTP and HTTP load
// generator that records the latency of every acknowledgement, a counting
// SMTP sink (optionally verifying DKIM and answering a share of 4xx/5xx),
// a private throw-away Postfix instance plus Postfix's smtp-source and
// smtp-sink as reference tools, a petreld process runner, and the scenarios
// that compare them and print one key=value line each.
//
// Nothing here is a production code path: the daemon never imports bench.
package bench
