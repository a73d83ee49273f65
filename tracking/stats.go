package tracking

import (
	"context"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/petrel-mta/petrel/internal/httpapi"
)

// CampaignReport is a campaign's stats as the API answers them: delivery
// outcomes counted from the event log and engagement from the engagement
// log's aggregates (never a scan of events), human and machine activity
// apart, rates over humans only.
type CampaignReport struct {
	Campaign string `json:"campaign"`
	Counts
	ClicksPerLink map[string]int64 `json:"clicks_per_link,omitempty"`
	// HourlyOpens are human opens per hour.
	HourlyOpens []HourCount `json:"hourly_opens,omitempty"`
	// By names the dimension of Breakdown (?by=provider or type).
	By        string  `json:"by,omitempty"`
	Breakdown []Slice `json:"breakdown,omitempty"`
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
	r := CampaignReport{Campaign: campaign, Counts: countsOf(st.Counters)}
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

// DimReport is every campaign's counts split by one dimension.
type DimReport struct {
	By     string  `json:"by"`
	Slices []Slice `json:"slices"`
}

// dimensionParam maps the API's ?by= values to dimensions.
var dimensionParam = map[string]string{"provider": DimProvider, "type": DimType}

// SegmentCampaigns returns the campaigns sent to a segment of an
// audience (campaign.Service.CampaignsOfSegment).
type SegmentCampaigns func(ctx context.Context, audience int64, segment string) ([]string, error)

// SegmentReport is the counts of every campaign sent to one segment,
// summed counter by counter (so rates are over the sums).
type SegmentReport struct {
	Audience  int64    `json:"audience"`
	Segment   string   `json:"segment"`
	Campaigns []string `json:"campaigns"`
	Counts
}

// SegmentReport sums the campaigns' counters.
func (l *Log) SegmentReport(audience int64, segment string, campaigns []string) (SegmentReport, error) {
	sum := map[string]int64{}
	for _, c := range campaigns {
		st, err := l.CampaignStats(c)
		if err != nil {
			return SegmentReport{}, err
		}
		for k, v := range st.Counters {
			sum[k] += v
		}
	}
	if campaigns == nil {
		campaigns = []string{}
	}
	return SegmentReport{Audience: audience, Segment: segment, Campaigns: campaigns, Counts: countsOf(sum)}, nil
}

// StatsHandler serves the stats API (mount it behind the API key):
//
//	GET /api/v1/stats/campaigns/{campaign}[?by=provider|type]   a campaign's report, optionally split
//	GET /api/v1/stats/providers                                 all campaigns by mailbox provider
//	GET /api/v1/stats/types                                     all campaigns by type (stream)
//	GET /api/v1/stats/segments?audience=ID&segment=EXPR         the campaigns sent to that segment, summed
//
// An unknown ?by= is a 400. segments is served when seg is not nil.
func (l *Log) StatsHandler(seg SegmentCampaigns) http.Handler {
	mux := http.NewServeMux()
	if seg != nil {
		mux.HandleFunc("GET /api/v1/stats/segments", func(w http.ResponseWriter, r *http.Request) {
			aud, err := strconv.ParseInt(r.URL.Query().Get("audience"), 10, 64)
			if err != nil || aud <= 0 {
				httpapi.WriteError(w, http.StatusBadRequest, "invalid_request", "audience: want an audience id")
				return
			}
			segment := r.URL.Query().Get("segment")
			cs, err := seg(r.Context(), aud, segment)
			var rep SegmentReport
			if err == nil {
				rep, err = l.SegmentReport(aud, segment, cs)
			}
			if err != nil {
				httpapi.WriteError(w, http.StatusInternalServerError, "internal", err.Error())
				return
			}
			httpapi.WriteJSON(w, http.StatusOK, rep)
		})
	}
	mux.HandleFunc("GET /api/v1/stats/campaigns/{campaign}", func(w http.ResponseWriter, r *http.Request) {
		by := r.URL.Query().Get("by")
		dimension, ok := dimensionParam[by]
		if by != "" && !ok {
			httpapi.WriteError(w, http.StatusBadRequest, "invalid_request", "by: want provider or type")
			return
		}
		rep, err := l.Report(r.PathValue("campaign"))
		if err == nil && by != "" {
			rep.By = by
			rep.Breakdown, err = l.CampaignBy(rep.Campaign, dimension)
		}
		if err != nil {
			httpapi.WriteError(w, http.StatusInternalServerError, "internal", err.Error())
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, rep)
	})
	for by, dimension := range dimensionParam {
		mux.HandleFunc("GET /api/v1/stats/"+by+"s", func(w http.ResponseWriter, r *http.Request) {
			s, err := l.TotalsBy(dimension)
			if err != nil {
				httpapi.WriteError(w, http.StatusInternalServerError, "internal", err.Error())
				return
			}
			httpapi.WriteJSON(w, http.StatusOK, DimReport{By: by, Slices: s})
		})
	}
	return mux
}
