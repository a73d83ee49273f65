package bounce

import (
	"bytes"
	"encoding/json"
	"strings"
)

// sesNotification is the JSON body of an Amazon SES notification
// (Bounce, Complaint or Delivery) as delivered by SNS e-mail subscriptions.
type sesNotification struct {
	NotificationType string `json:"notificationType"`
	Bounce           *struct {
		BounceType        string `json:"bounceType"`
		BouncedRecipients []struct {
			EmailAddress   string `json:"emailAddress"`
			Action         string `json:"action"`
			Status         string `json:"status"`
			DiagnosticCode string `json:"diagnosticCode"`
		} `json:"bouncedRecipients"`
		ReportingMTA string `json:"reportingMTA"`
	} `json:"bounce"`
	Complaint *struct {
		ComplainedRecipients []struct {
			EmailAddress string `json:"emailAddress"`
		} `json:"complainedRecipients"`
		ComplaintFeedbackType string `json:"complaintFeedbackType"`
	} `json:"complaint"`
	Delivery *struct {
		Recipients   []string `json:"recipients"`
		SMTPResponse string   `json:"smtpResponse"`
		ReportingMTA string   `json:"reportingMTA"`
	} `json:"delivery"`
	Mail struct {
		Source    string `json:"source"`
		MessageID string `json:"messageId"`
		Headers   []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"headers"`
	} `json:"mail"`
}

// parseSES recognises an SES JSON notification in text; it reports
// whether it did.
func (r *Rules) parseSES(rep *Report, text []byte) bool {
	i := bytes.IndexByte(text, '{')
	if i < 0 || !bytes.Contains(text, []byte(`"notificationType"`)) {
		return false
	}
	// Long lines in some relays are broken with "!\n " (sendmail); undo it.
	js := bytes.ReplaceAll(text[i:], []byte("!\n "), nil)
	var n sesNotification
	if err := json.NewDecoder(bytes.NewReader(js)).Decode(&n); err != nil {
		return false
	}
	rep.OriginalReturnPath = strings.ToLower(n.Mail.Source)
	for _, h := range n.Mail.Headers {
		switch strings.ToLower(h.Name) {
		case "message-id":
			rep.OriginalMessageID = strings.Trim(h.Value, "<> ")
		case "x-petrel-id":
			rep.PetrelID = strings.TrimSpace(h.Value)
		}
	}
	switch {
	case n.Bounce != nil:
		rep.Kind = KindDSN
		_, rep.ReportingMTA = typedValue(n.Bounce.ReportingMTA)
		for _, b := range n.Bounce.BouncedRecipients {
			dtype, diag := typedValue(b.DiagnosticCode)
			f := fact{status: b.Status, text: strings.ToLower(diag), action: strings.ToLower(b.Action), diagType: dtype}
			if !validStatus(f.status) {
				f.status = findStatus(diag)
			}
			f.code = findReply(diag)
			f.command = findCommand(diag)
			f.domain = domainOf(b.EmailAddress)
			f.lhost = hostOf(n.Bounce.ReportingMTA)
			c := r.finish(f)
			rep.Bounces = append(rep.Bounces, Bounce{Recipient: strings.ToLower(b.EmailAddress), Reason: c.Reason,
				Status: c.Status, ReplyCode: c.Code, Hard: c.Hard, Diagnostic: diag, Action: f.action})
		}
	case n.Complaint != nil:
		rep.Kind = KindARF
		rep.FeedbackType = strings.ToLower(firstNonEmpty(n.Complaint.ComplaintFeedbackType, "abuse"))
		for _, c := range n.Complaint.ComplainedRecipients {
			rep.Bounces = append(rep.Bounces, Bounce{Recipient: strings.ToLower(c.EmailAddress), Reason: "feedback", Diagnostic: rep.FeedbackType})
		}
	case n.Delivery != nil:
		rep.Kind = KindDSN
		rep.ReportingMTA = n.Delivery.ReportingMTA
		for _, a := range n.Delivery.Recipients {
			f := fact{status: findStatus(n.Delivery.SMTPResponse), code: findReply(n.Delivery.SMTPResponse), action: "delivered"}
			c := r.finish(f)
			rep.Bounces = append(rep.Bounces, Bounce{Recipient: strings.ToLower(a), Reason: c.Reason, Status: c.Status,
				ReplyCode: c.Code, Diagnostic: n.Delivery.SMTPResponse, Action: "delivered"})
		}
	default:
		return false
	}
	return true
}
