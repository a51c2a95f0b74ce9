package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// QueueStat is one function's queue as Redis holds it at scrape time.
type QueueStat struct {
	Function string
	// Served: this sidecar dispatches the function; only those get the queue gauges. Every
	// sidecar serving a function reports its queue, so dashboards take max by (function).
	Served           bool
	Length           int64         // entries in the calls stream (pending and not yet trimmed)
	Pending          int64         // delivered to a dispatcher and not acknowledged
	OldestPendingAge time.Duration // age of the oldest pending entry; 0 when none
	DeadLetters      int64         // entries in the dead-letter stream
	LiveSidecars     int           // sidecars whose heartbeat says they serve it
}

// QueueSource reads the queues of the functions the sidecar knows; ctx carries the scrape's
// short deadline.
type QueueSource func(ctx context.Context) ([]QueueStat, error)

// queueScrapeTimeout bounds the Redis reads of one scrape: a slow Redis yields
// n8n_fn_registry_up 0 instead of a scrape that hangs until Prometheus gives up.
const queueScrapeTimeout = 2 * time.Second

// WatchQueues adds the queue gauges, read from src at every scrape. Call once.
func (m *Metrics) WatchQueues(src QueueSource) {
	if m == nil || src == nil {
		return
	}
	fn := []string{"function"}
	m.reg.MustRegister(&queueCollector{src: src,
		length: prometheus.NewDesc(Prefix+"queue_length", "Entries in a served function's call stream (queued, in flight, or answered and not yet trimmed).", fn, nil),
		pend:   prometheus.NewDesc(Prefix+"queue_pending", "Calls of a served function delivered to a dispatcher and not yet answered.", fn, nil),
		age:    prometheus.NewDesc(Prefix+"queue_oldest_pending_age_seconds", "Age of a served function's oldest unanswered call (0 when none).", fn, nil),
		dead:   prometheus.NewDesc(Prefix+"dead_letter_queue_length", "Calls in a served function's dead-letter stream (replay or purge them with n8n-fn deadletters).", fn, nil),
		live:   prometheus.NewDesc(Prefix+"function_live_sidecars", "Live sidecars serving a published function (its registration refreshed by a discovery within the last minute); 0 means its calls fail fast.", fn, nil),
		up:     prometheus.NewDesc(Prefix+"registry_up", "1 when this scrape could read the function registry in Redis, else 0.", nil, nil),
	})
}

type queueCollector struct {
	src                               QueueSource
	length, pend, age, dead, live, up *prometheus.Desc
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.length, c.pend, c.age, c.dead, c.live, c.up} {
		ch <- d
	}
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), queueScrapeTimeout)
	defer cancel()
	stats, err := c.src(ctx)
	up := 1.0
	if err != nil {
		up = 0 // what was read before the error is still reported
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up)
	for _, s := range stats {
		ch <- prometheus.MustNewConstMetric(c.live, prometheus.GaugeValue, float64(s.LiveSidecars), s.Function)
		if !s.Served {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.length, prometheus.GaugeValue, float64(s.Length), s.Function)
		ch <- prometheus.MustNewConstMetric(c.pend, prometheus.GaugeValue, float64(s.Pending), s.Function)
		ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, s.OldestPendingAge.Seconds(), s.Function)
		ch <- prometheus.MustNewConstMetric(c.dead, prometheus.GaugeValue, float64(s.DeadLetters), s.Function)
	}
}
