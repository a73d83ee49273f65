package campaign

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/tracking"
)

// recordingFilter is a real content filter that also keeps the last
// message it scored.
type recordingFilter struct {
	ContentFilter
	mu   sync.Mutex
	last []byte
}

func (f *recordingFilter) Score(ctx context.Context, msg []byte, env FilterEnvelope) (SpamResult, error) {
	f.mu.Lock()
	f.last = append([]byte(nil), msg...)
	f.mu.Unlock()
	return f.ContentFilter.Score(ctx, msg, env)
}

var clickToken = regexp.MustCompile(`https://t\.shop\.test/t/c/([A-Za-z0-9_-]+)`)

// unQP undoes quoted-printable soft breaks and the =3D of '=' (enough
// to find the links of a message the engine built).
func unQP(s string) string {
	return strings.NewReplacer("=\r\n", "", "=3D", "=").Replace(s)
}

// TestCheckAndTestSendAreTracked: the pre-send check scores (with a real
// rspamd) and sizes the message as recipients get it, click tokens and
// open pixel included; a test send is tracked like the campaign, under
// the tag "<id>#test" (never counted in the campaign's stats) and no
// contact, and moves no progress.
func TestCheckAndTestSendAreTracked(t *testing.T) {
	rspamd := testnet.Rspamd(t)
	signer, err := tracking.NewSigner([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	eachBackend(t, 3, func(t *testing.T, e *svcEnv) {
		filter := &recordingFilter{ContentFilter: &Rspamd{URL: rspamd}}
		e.opts.Tracking = &Tracking{Sign: signer.Encode, BaseURL: func(string) string { return "https://t.shop.test" }}
		e.opts.Check = CheckOptions{Filter: filter, Threshold: 6, Hostname: "petrel.test"}
		e.svc.SetOptions(e.opts)
		sp := e.spec("tracked")
		sp.HTML = `<p>Dear %name%, the harbour market opens on Saturday.</p><p><a href="https://shop.test/market">See the stalls</a></p>`
		sp.Text = ""
		if _, err := e.svc.Create(e.ctx, sp); err != nil {
			t.Fatal(err)
		}
		res, err := e.svc.Check(e.ctx, "tracked")
		if err != nil {
			t.Fatal(err)
		}
		scored := unQP(string(filter.last))
		if res.Spam == nil || !clickToken.MatchString(scored) || !strings.Contains(scored, "https://t.shop.test/t/o/") || res.Size != len(filter.last) {
			t.Fatalf("check scored an untracked message (size %d of %d):\n%s", res.Size, len(filter.last), scored)
		}
		if l := item(res, "links"); l.Status != CheckPass {
			t.Fatalf("links item %+v", l)
		}

		if _, err := e.svc.TestSend(e.ctx, "tracked", []string{"c1@example.test"}); err != nil {
			t.Fatal(err)
		}
		bodies := e.queued(t)["c1@example.test"]
		if len(bodies) != 1 {
			t.Fatalf("%d test messages", len(bodies))
		}
		body := unQP(bodies[0])
		m := clickToken.FindStringSubmatch(body)
		if m == nil || !strings.Contains(body, "/t/o/") || !strings.Contains(body, "Subject: [Test]") {
			t.Fatalf("test message not tracked:\n%s", body)
		}
		tok, err := signer.Decode(m[1])
		if err != nil {
			t.Fatal(err)
		}
		if tok.Campaign != "tracked#test" || tok.URL != "https://shop.test/market" || tok.Recipient != "0" || !strings.HasPrefix(tok.Message, "campaign-test:tracked:") {
			t.Fatalf("test click token %+v", tok)
		}
		if c := e.status("tracked"); c.Progress.Sent != 0 || c.Status != StatusDraft {
			t.Fatalf("a test send counted: %+v", c)
		}
	})
}

// TestABMetricMustBeTracked: an A/B test judged on opens with
// track_opens off, or on clicks with track_clicks off, is refused (400
// over HTTP, with the reason); judged on what is tracked it is accepted.
func TestABMetricMustBeTracked(t *testing.T) {
	eachBackend(t, 1, func(t *testing.T, e *svcEnv) {
		off := false
		variants := []Variant{{Name: "a", Subject: "A %first_name%"}, {Name: "b", Subject: "B %first_name%"}}
		h := e.svc.Handler()
		for _, tc := range []struct {
			id, metric          string
			trackOpens, trackCl *bool
			status              int
			want                string
		}{
			{"opens-off", "opens", &off, nil, 400, "track_opens"},
			{"default-off", "", &off, nil, 400, "track_opens"},
			{"clicks-off", "clicks", nil, &off, 400, "track_clicks"},
			{"clicks-on", "clicks", &off, nil, 201, ""},
			{"opens-on", "opens", nil, &off, 201, ""},
		} {
			sp := e.spec(tc.id)
			sp.TrackOpens, sp.TrackClicks = tc.trackOpens, tc.trackCl
			sp.AB = &ABTest{Percent: 10, Metric: tc.metric, Variants: variants}
			raw, err := json.Marshal(sp)
			if err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/api/v1/campaigns", strings.NewReader(string(raw))))
			if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.want) {
				t.Errorf("%s: %d %s, want %d mentioning %q", tc.id, w.Code, w.Body, tc.status, tc.want)
			}
		}
	})
}
