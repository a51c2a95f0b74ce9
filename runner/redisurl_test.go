package runner

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/n8n-fn/n8n-fn/internal/redistest"
)

// `n8n-fn run` reads N8N_FN_REDIS_URL with the registry's parser, the one `n8n-fn status` and
// `replay` use, so Redis Cluster and Sentinel URLs work for the sidecar too.
func TestRunRedisURLForms(t *testing.T) {
	env := func(url string) func(string) string {
		return func(k string) string {
			return map[string]string{"N8N_RUNNERS_AUTH_TOKEN": "x", "N8N_FN_RUNNER_MODE": ModeNone, "N8N_FN_REDIS_URL": url}[k]
		}
	}
	for _, ok := range []string{
		"redis://127.0.0.1:6379/0",
		"rediss://user:pass@redis.example:6380/2",
		"redis+cluster://10.0.0.1:7000?addr=10.0.0.2:7000&addr=10.0.0.3:7000",
		"redis+sentinel://10.0.0.1:26379?master_name=mymaster",
	} {
		if _, err := ConfigFromEnv(env(ok)); err != nil {
			t.Errorf("%s rejected: %v", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"http://127.0.0.1:6379":                  "unknown scheme",
		"127.0.0.1:6379":                         "want redis://host:port/db",
		"redis+sentinel://10.0.0.1:26379":        "master_name",
		"redis+ring://10.0.0.1:7000":             "unknown mode",
		"redis://127.0.0.1:6379/not-a-db-number": "N8N_FN_REDIS_URL",
	} {
		_, err := ConfigFromEnv(env(bad))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one saying %q", bad, err, want)
		}
	}
}

// TestSidecarOnRedisCluster runs a sidecar with its functions' Redis on a real 3-master cluster: it
// becomes ready (the function registry answers through the cluster client) and writes its keys there.
func TestSidecarOnRedisCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	addrs := cl.Addrs()
	url := "redis+cluster://" + addrs[0] + "?addr=" + strings.Join(addrs[1:], "&addr=")
	prefix := "tcl" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "")) + ":"
	s, _, _ := testSidecar(t, func(c *Config) {
		c.RunnerMode = ModeNone
		c.RedisURL = url
		c.Prefix = prefix
		c.Secret = "cluster-test-secret-0123456789"
	})
	waitFor(t, "sidecar ready on the cluster", 20*time.Second, func() bool {
		resp, err := http.Get("http://" + s.HealthAddr() + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode == http.StatusOK
	})
	rdb := cl.Client()
	waitFor(t, "the sidecar's keys on the cluster", 20*time.Second, func() bool {
		var found atomic.Bool // ForEachMaster calls the masters at once
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = rdb.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			if keys, err := m.Keys(ctx, prefix+"*").Result(); err == nil && len(keys) > 0 {
				found.Store(true)
			}
			return nil
		})
		return found.Load()
	})
}
