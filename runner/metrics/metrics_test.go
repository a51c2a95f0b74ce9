package metrics

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/n8n-fn/n8n-fn/internal/redistest"
)

// scrape serves m's handler and parses the page, as Prometheus would read it.
func scrape(t *testing.T, m *Metrics) Scrape {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics answered %d: %s", rec.Code, rec.Body)
	}
	s, err := ParseScrape(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func value(t *testing.T, s Scrape, name string, labels ...string) float64 {
	t.Helper()
	v, ok := s.Value(name, labels...)
	if !ok {
		t.Fatalf("%s%v is not in the scrape (names: %v)", name, labels, s.Names())
	}
	return v
}

// Exercise touches every hook once so every family has a sample (the documentation check uses it).
func exercise(m *Metrics) {
	m.CallStarted("global/add")
	m.CallStarted("global/add")
	m.CallFinished("global/add", OutcomeOK, 30*time.Millisecond)
	m.CallFinished("global/add", "failed", 2*time.Second)
	m.Dispatched("global/add", 1, 5*time.Millisecond)
	m.Dispatched("global/add", 2, time.Second) // a re-run: no queue wait
	m.Reclaimed("global/add")
	m.DeadLettered("global/add")
	m.NativeTask("call", OutcomeOK)
	m.Relayed("javascript", "relayed", 40*time.Millisecond)
	m.redisError("xadd", errors.New("dial tcp: connection refused"))
	m.Connections(func() bool { return true }, func(t string) bool { return t == "javascript" }, []string{"javascript", "python"})
	m.WatchQueues(func(context.Context) ([]QueueStat, error) {
		return []QueueStat{
			{Function: "global/add", Served: true, Length: 7, Pending: 2, OldestPendingAge: 1500 * time.Millisecond, DeadLetters: 1, LiveSidecars: 2},
			{Function: "wf1/elsewhere", LiveSidecars: 0},
		}, nil
	})
}

func TestHooksMoveTheirSeries(t *testing.T) {
	m := New()
	exercise(m)
	s := scrape(t, m)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"n8n_fn_calls_started_total", []string{"function=global/add"}, 2},
		{"n8n_fn_calls_finished_total", []string{"function=global/add", "outcome=ok"}, 1},
		{"n8n_fn_calls_finished_total", []string{"function=global/add", "outcome=failed"}, 1},
		{"n8n_fn_call_duration_seconds", []string{"function=global/add"}, 2},
		{"n8n_fn_call_queue_wait_seconds", []string{"function=global/add"}, 1},
		{"n8n_fn_function_dispatches_total", []string{"function=global/add"}, 2},
		{"n8n_fn_function_reruns_total", []string{"function=global/add"}, 1},
		{"n8n_fn_calls_reclaimed_total", nil, 1},
		{"n8n_fn_dead_letters_total", nil, 1},
		{"n8n_fn_native_tasks_total", []string{"op=call", "outcome=ok"}, 1},
		{"n8n_fn_relayed_tasks_total", []string{"task_type=javascript", "outcome=relayed"}, 1},
		{"n8n_fn_relay_duration_seconds", nil, 1},
		{"n8n_fn_redis_errors_total", []string{"op=xadd", "kind=connection"}, 1},
		{"n8n_fn_n8n_connected", nil, 1},
		{"n8n_fn_runner_connected", []string{"task_type=javascript"}, 1},
		{"n8n_fn_runner_connected", []string{"task_type=python"}, 0},
		{"n8n_fn_queue_length", []string{"function=global/add"}, 7},
		{"n8n_fn_queue_pending", []string{"function=global/add"}, 2},
		{"n8n_fn_queue_oldest_pending_age_seconds", []string{"function=global/add"}, 1.5},
		{"n8n_fn_dead_letter_queue_length", []string{"function=global/add"}, 1},
		{"n8n_fn_function_live_sidecars", []string{"function=global/add"}, 2},
		{"n8n_fn_function_live_sidecars", []string{"function=wf1/elsewhere"}, 0},
		{"n8n_fn_registry_up", nil, 1},
	} {
		if got := value(t, s, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// Only served functions get queue gauges.
	if _, ok := s.Value("n8n_fn_queue_length", "function=wf1/elsewhere"); ok {
		t.Error("a function this sidecar does not serve has queue gauges")
	}
	if _, ok := s.Value("go_goroutines"); !ok {
		t.Error("Go runtime metrics are missing")
	}
}

// Each sidecar has a registry of its own: two in one process do not add up each other's counts.
func TestRegistriesAreSeparate(t *testing.T) {
	a, b := New(), New()
	a.CallStarted("global/add")
	if _, ok := scrape(t, b).Value("n8n_fn_calls_started_total"); ok {
		t.Fatal("a call counted on one sidecar's metrics shows on another's")
	}
	var none *Metrics // parts built without metrics call the hooks on nil
	none.CallStarted("x")
	none.CallFinished("x", OutcomeOK, time.Second)
	none.Dispatched("x", 1, 0)
	none.Reclaimed("x")
	none.DeadLettered("x")
	none.NativeTask("call", "ok")
	none.Relayed("javascript", "relayed", 0)
	none.WatchQueues(nil)
	none.Connections(nil, nil, nil)
}

// A registry read that fails shows as n8n_fn_registry_up 0 and keeps what was read; a slow one is
// cut at the scrape timeout instead of hanging the scrape.
func TestQueueScrapeFailureAndTimeout(t *testing.T) {
	m := New()
	m.WatchQueues(func(ctx context.Context) ([]QueueStat, error) {
		<-ctx.Done()
		return []QueueStat{{Function: "global/add", Served: true, Length: 3}}, ctx.Err()
	})
	start := time.Now()
	s := scrape(t, m)
	if took := time.Since(start); took > queueScrapeTimeout+time.Second {
		t.Fatalf("scrape took %s with a hanging Redis", took)
	}
	if got := value(t, s, "n8n_fn_registry_up"); got != 0 {
		t.Errorf("registry_up = %v after a failed read, want 0", got)
	}
	if got := value(t, s, "n8n_fn_queue_length", "function=global/add"); got != 3 {
		t.Errorf("queue_length = %v, want the 3 read before the failure", got)
	}
}

// The Redis hook counts real failed commands by command and kind, and not redis.Nil.
func TestRedisHookCountsFailedCommands(t *testing.T) {
	rs := redistest.Start(t)
	m := New()
	c := rs.Client()
	c.AddHook(m.RedisHook())
	ctx := context.Background()
	key := rs.Prefix() + "metrics-test"
	if err := c.Set(ctx, key, "x", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.LPush(ctx, key, "y").Err(); err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Fatalf("LPUSH on a string: %v, want WRONGTYPE", err)
	}
	_ = c.Get(ctx, rs.Prefix()+"missing").Err() // redis.Nil: not an error
	// XGROUP CREATE on an existing group answers BUSYGROUP, which the registry expects.
	stream := rs.Prefix() + "metrics-stream"
	for i := 0; i < 2; i++ {
		_ = c.XGroupCreateMkStream(ctx, stream, "g", "$").Err()
	}
	_, _ = c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Get(ctx, key)
		p.LPush(ctx, key, "z")
		return nil
	})
	// Nothing listens on port 1: a connection error.
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: time.Second})
	defer down.Close()
	down.AddHook(m.RedisHook())
	if err := down.Ping(ctx).Err(); err == nil {
		t.Fatal("PING to a closed port worked")
	}
	s := scrape(t, m)
	if got := value(t, s, "n8n_fn_redis_errors_total", "op=lpush", "kind=reply"); got != 2 {
		t.Errorf("lpush reply errors = %v, want 2 (one alone, one in a pipeline)", got)
	}
	if got := value(t, s, "n8n_fn_redis_errors_total", "op=ping", "kind=connection"); got != 1 {
		t.Errorf("ping connection errors = %v, want 1", got)
	}
	if _, ok := s.Value("n8n_fn_redis_errors_total", "op=get"); ok {
		t.Error("a GET of a missing key (redis.Nil) was counted as an error")
	}
	if _, ok := s.Value("n8n_fn_redis_errors_total", "op=xgroup"); ok {
		t.Error("BUSYGROUP of an existing group was counted as an error")
	}
}
