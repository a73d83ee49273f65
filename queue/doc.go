// Package queue owns Petrel's spool: messages, recipients, the retry
// schedule, holds, the event log and crash recovery, all in one Pebble
// database. It is the only writer of these keys and does no networking.
//
// # Keyspace
//
//	prefix key                                         value
//	m      msgID                                       JSON metaRec: envelope, stream, tenant, campaign, size, created
//	b      msgID                                       raw RFC 5322 bytes, stored once per message
//	l      msgID                                       uvarint: recipients not yet final
//	r      msgID, rcpt# (uint32 BE)                    JSON rcptRec: address, state, attempts, due, last reply, forced
//	s      due (uint64 BE, unix ns, sign-flipped),     empty; the recipient is due at that time
//	       domain, 0x00, msgID, rcpt# (uint32 BE)
//	e      seq (16 hex digits)                         JSON Event
//	t      msgID                                       JSON MessageInfo of a finished message (tombstone)
//	k      cursor name                                 cursor value (webhook dispatchers' last Seq)
//	c      counter name                                varint delta, summed by a merge operator
//
// Message IDs are 26 characters of base32hex over 8 bytes of creation time
// (unix ns) and 8 random bytes, so m, b, l, r and t keys sort by age and a
// time can be turned into an ID bound (retention, oldest message).
//
// # Invariants
//
//  1. Acknowledged means durable: Enqueue returns after its batch (m, b, l,
//     r, s, e, c keys) is committed with pebble.Sync. Concurrent commits
//     share fsyncs through Pebble's commit pipeline. EnqueueBatch commits
//     many messages in one such batch (all or none); a body given as
//     NewMessage.Parts is copied piece by piece straight into the batch.
//  2. A recipient is queued or deferred if and only if it has exactly one s
//     key, whose due time equals its r record's Due. Held and final
//     recipients have none. Every state change writes r, s, e and c keys
//     in one batch.
//  3. l holds the number of non-final recipients. When it would reach 0,
//     the same batch deletes m, b, l and the r range and writes t instead.
//  4. An s key is removed only by the batch that records the attempt's
//     result (Complete), a hold, a delete or an expiry: a batch handed out
//     and not completed before a crash is handed out again after restart.
//  5. The scheduler holds at most ReadyLimit recipients in memory, plus a
//     set of recipients it has handed out and not seen completed (known),
//     so a recipient is never handed out twice concurrently. Everything
//     else stays in Pebble and is read in due order from the s keys; every
//     s key due before scanFrom is known or gone, so scans skip the
//     deleted prefix of the schedule.
//  6. Event seqs are allocated monotonically and hidden from Events until
//     their batch commits, so a reader paging by Seq never skips one.
//  7. The counters (c) change in the same batches as the states they
//     count, so Open reads them instead of scanning.
//  8. Events and tombstones older than EventRetention are range-deleted in
//     the background.
//  9. With a free-space reserve (Options.MinFreeSpace), no batch reaches
//     Pebble when the file system could not take it (space.go): Pebble v1
//     makes a failed WAL write fatal. New mail is refused first, state
//     changes last; a ballast file (PETREL-RESERVE) in the spool directory
//     is given up to keep deliveries recordable on a disk filled by others.
package queue
