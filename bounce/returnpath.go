package bounce

import "github.com/petrel-mta/petrel/queue"

// ReturnPath is delivery's envelope-sender choice (delivery.Options
// ReturnPath) for the bounce domain: a VERP address per recipient when
// the transaction carries one recipient, else one naming the message only
// (the report's recipient then identifies who failed). Without a domain
// or secret it returns nil: delivery keeps the message's own sender.
func ReturnPath(domain string, secret []byte) func(b *queue.Batch, idx []int) string {
	if domain == "" || len(secret) == 0 {
		return nil
	}
	v := VERP{Domain: domain, Secret: secret}
	return func(b *queue.Batch, idx []int) string {
		if len(idx) == 1 {
			return v.Encode(b.MsgID, b.Rcpts[idx[0]].Index)
		}
		return v.Encode(b.MsgID, AnyRecipient)
	}
}

// ClassifyReply is delivery's classifier (delivery.Options Classify):
// the reason and hardness Classify gives a synchronous reply.
func (r *Rules) ClassifyReply(code int, enhanced, text string) (reason string, hard bool) {
	c := r.Classify(code, enhanced, text)
	return c.Reason, c.Hard
}
