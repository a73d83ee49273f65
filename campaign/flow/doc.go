// Package flow owns automation flows: a trigger and a list of steps
// (wait, send a template, branch on a condition, tag, update a field,
// post a webhook, exit) that contacts of an audience go through one by
// one, stored versioned in the ESP database beside the audiences.
//
// Durability. Everything a flow does is a row in the ESP database: a
// contact's position (flow_runs), its pending timer (flow_timers, ordered
// by (due_at, id) with an index, so a million waiting contacts cost rows,
// not memory), the custom events apps post (flow_inbox, acknowledged
// after commit), and what happened (flow_journal). One Runner processes
// due timers in pages: it computes each run's next steps, hands the
// page's messages to ingest in one SubmitBatch (each with the
// idempotency key "flow:<flow>:<run>:<step>", which the spool stores
// once, ever), then commits the runs' new positions, timers and journal
// rows in one transaction. A crash between the two resubmits the same
// messages, which the spool turns into no-ops: no step sends twice and
// none is skipped. Timers that came due while the daemon was down run on
// restart, oldest due first. Webhook steps are at least once (they carry
// the same idempotency key in an Idempotency-Key header).
//
// Clock. Timers store absolute due times (Unix seconds). A clock that
// jumps forward makes the timers it jumps over due at once (they run, in
// due order); a clock that jumps back delays them by the jump. Nothing is
// computed from elapsed wall time between two ticks.
//
// Triggers come from three durable logs followed after cursors: the
// inbox (custom events), audience's change log (tag added/removed,
// joined) and the MTA event log (opened/clicked); date and "did not open
// in N days" triggers come from a periodic scan of the audience.
package flow
