// Package events owns what happens after a state change is recorded in the
// queue's event log: feedback processing (asynchronous bounces, ARF
// complaints and auto-replies received by the bounce domain's listener),
// suppression rules (hard bounce, soft-bounce limit, complaints), signed
// webhooks with durable cursors, event metrics, rate alarms and the
// marketing-stream pause.
//
// Every action is driven by durable records: the feedback handler answers
// 250 only after its events are committed and its suppressions stored;
// the rules loop and each webhook dispatcher read queue.Events after a
// durable named cursor (queue.Cursor/SetCursor) that advances only after
// the work for an event is done, so a restart or an endpoint outage loses
// nothing (at-least-once). Metrics and rates are fed by queue.Options.OnEvent
// and never block the queue. See README.md for the event types, webhook
// payload and signature, metric names, alarms and suppression rules.
package events
