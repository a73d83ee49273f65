package delivery

import (
	"bytes"
	"fmt"

	"github.com/petrel-mta/petrel/internal/eightbit"
)

// bodyFor returns the message as the next hop on c can take it (RFC 6152
// section 3). A 7-bit body, or any body to a host that offers 8BITMIME,
// goes as stored (mailParams then declares BODY=8BITMIME for 8-bit data).
// An 8-bit body to a host that does not offer 8BITMIME is converted to
// 7-bit (quoted-printable text parts, base64 others, header fields as they
// are: package eightbit), as Postfix does. Petrel's own DKIM signatures
// survive this because policy/dkim converts 8-bit messages before signing;
// a signature made elsewhere over an 8-bit body does not, and the log line
// says so. A message that cannot be converted is refused for this host
// with 554 5.6.3 (the next MX may offer 8BITMIME; else it bounces).
func (d *Deliverer) bodyFor(c *smtpConn, msgID string, body []byte) ([]byte, *failure) {
	if c.has("8BITMIME") || !eightbit.BodyHas8bit(body) {
		return body, nil
	}
	out, err := eightbit.To7bit(body)
	if err != nil {
		d.log.Warn("8-bit message not convertible for a host without 8BITMIME", "msg_id", msgID, "mx", c.mxHost, "err", err)
		return nil, &failure{code: 554, enhanced: "5.6.3", mx: c.mxHost,
			reply: fmt.Sprintf("local: %s does not offer 8BITMIME and the message cannot be converted to 7-bit: %v", c.mxHost, err)}
	}
	d.log.Info("8-bit message converted to 7-bit: the host does not offer 8BITMIME", "msg_id", msgID, "mx", c.mxHost,
		"size", len(body), "converted_size", len(out), "foreign_dkim_signature_broken", hasDKIMSignature(body))
	return out, nil
}

// hasDKIMSignature reports a DKIM-Signature field in msg's header section.
func hasDKIMSignature(msg []byte) bool {
	h := bytes.ToLower(msg[:eightbit.BodyStart(msg)])
	return bytes.HasPrefix(h, []byte("dkim-signature:")) || bytes.Contains(h, []byte("\ndkim-signature:"))
}
