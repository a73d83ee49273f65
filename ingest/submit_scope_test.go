package ingest

import (
	"errors"
	"testing"
)

func TestCheckScope(t *testing.T) {
	shop := []string{"shop.test"}
	for _, tt := range []struct {
		name            string
		env             Envelope
		stream, hdrFrom string
		wantField       string // "" accepts
	}{
		{"no limits", Envelope{From: "a@x.test"}, "marketing", "a@x.test", ""},
		{"own stream", Envelope{OnlyStream: "transactional"}, "transactional", "", ""},
		{"other stream", Envelope{OnlyStream: "transactional"}, "marketing", "", "stream"},
		{"own domain", Envelope{From: "a@shop.test", SenderDomains: shop}, "t", "a@shop.test", ""},
		{"subdomain", Envelope{From: "b@bounce.shop.test", SenderDomains: shop}, "t", "a@news.shop.test", ""},
		{"trailing dot", Envelope{From: "a@shop.test.", SenderDomains: shop}, "t", "", ""},
		{"suffix only", Envelope{From: "a@evilshop.test", SenderDomains: shop}, "t", "", "domain"},
		{"header From elsewhere", Envelope{From: "a@shop.test", SenderDomains: shop}, "t", "x@other.test", "domain"},
		{"envelope elsewhere", Envelope{From: "a@other.test", SenderDomains: shop}, "t", "a@shop.test", "domain"},
		{"no sender at all", Envelope{SenderDomains: shop}, "t", "", "domain"},
		{"null sender, own From", Envelope{SenderDomains: shop}, "t", "a@shop.test", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := checkScope(tt.env, tt.stream, tt.hdrFrom)
			var se *ScopeError
			switch {
			case tt.wantField == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.wantField != "" && (!errors.As(err, &se) || se.Field != tt.wantField || se.Error() == ""):
				t.Fatalf("err %v, want a %s ScopeError", err, tt.wantField)
			}
		})
	}
}
