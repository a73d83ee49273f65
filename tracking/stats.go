package tracking

import (
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/petrel-mta/petrel/internal/httpapi"
)

// CampaignReport is a campaign's engagement as the stats API answers it:
// the aggregates of the engagement log (never a scan of events), human
// and machine activity apart, and the click-to-open rate over humans.
type CampaignReport struct {
	Campaign        string           `json:"campaign"`
	Opens           int64            `json:"opens"`
	UniqueOpens     int64            `json:"unique_opens"`
	MachineOpens    int64            `json:"machine_opens"`
	ProxyOpens      int64            `json:"proxy_opens"`
	Clicks          int64            `json:"clicks"`
	UniqueClicks    int64            `json:"unique_clicks"`
	MachineClicks   int64            `json:"machine_clicks"`
	ClickToOpenRate float64          `json:"click_to_open_rate"`
	ClicksPerLink   map[string]int64 `json:"clicks_per_link,omitempty"`
	// HourlyOpens are human opens per hour.
	HourlyOpens []HourCount `json:"hourly_opens,omitempty"`
}

// HourCount is one hour of a time series.
type HourCount struct {
	Hour  time.Time `json:"hour"`
	Count int64     `json:"count"`
}

// Report builds campaign's report from the aggregates. Engagements still
// in the writer's buffer (under a second) are not in it yet.
func (l *Log) Report(campaign string) (CampaignReport, error) {
	st, err := l.CampaignStats(campaign)
	if err != nil {
		return CampaignReport{}, err
	}
	c := st.Counters
	r := CampaignReport{Campaign: campaign, Opens: c[CntOpens], UniqueOpens: c[CntUniqueOpens], MachineOpens: c[CntOpensMachine],
		ProxyOpens: c[CntOpensProxy], Clicks: c[CntClicks], UniqueClicks: c[CntUniqueClicks], MachineClicks: c[CntClicksMachine]}
	if r.UniqueOpens > 0 {
		r.ClickToOpenRate = float64(r.UniqueClicks) / float64(r.UniqueOpens)
	}
	if len(st.Links) > 0 {
		r.ClicksPerLink = map[string]int64{}
		for i, n := range st.Links {
			r.ClicksPerLink[strconv.Itoa(i)] = n
		}
	}
	hourly, err := l.Hourly(campaign, CntOpens)
	if err != nil {
		return CampaignReport{}, err
	}
	for t, n := range hourly {
		r.HourlyOpens = append(r.HourlyOpens, HourCount{Hour: time.Unix(t, 0).UTC(), Count: n})
	}
	sort.Slice(r.HourlyOpens, func(i, j int) bool { return r.HourlyOpens[i].Hour.Before(r.HourlyOpens[j].Hour) })
	return r, nil
}

// StatsHandler serves GET /api/v1/stats/campaigns/{campaign}: the
// campaign's engagement report (mount it behind the API key).
func (l *Log) StatsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/stats/campaigns/{campaign}", func(w http.ResponseWriter, r *http.Request) {
		rep, err := l.Report(r.PathValue("campaign"))
		if err != nil {
			httpapi.WriteError(w, http.StatusInternalServerError, "internal", err.Error())
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, rep)
	})
	return mux
}
