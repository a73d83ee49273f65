package tracking

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkClickRedirect is the server-side work of one click (token
// verification, classification, redirect), without the network:
//
//	go test -run '^$' -bench ClickRedirect -benchmem ./tracking
func BenchmarkClickRedirect(b *testing.B) {
	s := newSigner(b, testSecret)
	tok, _ := s.Encode(Token{Kind: Click, Message: "camp7:k42", Recipient: "contact-42", Link: 3, URL: "https://shop.test/p?utm_source=petrel&utm_campaign=winter", Sent: 1})
	h := &Handler{Signer: s}
	req := httptest.NewRequest("GET", ClickPath+tok, nil)
	req.Header.Set("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131")
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusFound {
			b.Fatal(w.Code)
		}
	}
}
