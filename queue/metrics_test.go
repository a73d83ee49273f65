package queue

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegisterMetrics(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{})
	reg := prometheus.NewRegistry()
	if err := q.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	id := mustEnqueue(t, q, "s@src.test", []string{"a@x.test", "b@y.test"}, "m")
	if _, err := q.Hold(ctxT(t), id); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "/" + l.GetValue()
			}
			got[name] = m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{
		"petrel_queue_messages":            1,
		"petrel_queue_recipients/held":     2,
		"petrel_queue_recipients/queued":   0,
		"petrel_queue_recipients/deferred": 0,
		"petrel_queue_inflight_recipients": 0,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if _, ok := got["petrel_queue_oldest_message_age_seconds"]; !ok {
		t.Error("no oldest age gauge")
	}
	if err := q.RegisterMetrics(reg); err == nil {
		t.Fatal("double registration accepted")
	}
}
