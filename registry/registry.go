package registry

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Registry is the project's only door to Redis. It is safe for concurrent use.
type Registry struct {
	rdb     redis.UniversalClient
	cfg     Config
	k       keys
	cluster bool
	// replyChunk bounds one BLPOP: short enough to notice a cancelled context and to stay inside
	// the client's read timeout (a plain Do command gets no extra read time for blocking).
	replyChunk time.Duration

	mu         sync.Mutex
	features   *features // detected once, on first need
	noReplicas string    // run id of a master taken to run without replicas (durable)
	lastMaster string    // run id of the master the client talked to when last asked (currentMaster)
}

// features are the server capabilities the registry adapts to.
type features struct {
	version    [3]int
	autoClaim  bool // XAUTOCLAIM (6.2)
	minID      bool // XTRIM/XADD MINID and NOMKSTREAM (6.2)
	floatBlock bool // sub-second BLPOP timeouts (6.0)
	lag        bool // XINFO GROUPS lag (7.0)
}

// New checks cfg (after defaults) and returns a Registry. It does not talk to Redis, so it works
// while Redis is down; the server version is detected on first use.
func New(client redis.UniversalClient, cfg Config) (*Registry, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: registry: nil redis client", ErrInvalid)
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	_, cluster := client.(*redis.ClusterClient)
	return &Registry{rdb: client, cfg: cfg, k: keys{prefix: cfg.Prefix}, cluster: cluster,
		replyChunk: replyChunkFor(readTimeout(client))}, nil
}

// readTimeout is the client's read timeout (0 when unknown; go-redis's default is 3s).
func readTimeout(client redis.UniversalClient) time.Duration {
	switch c := client.(type) {
	case *redis.Client:
		return c.Options().ReadTimeout
	case *redis.ClusterClient:
		return c.Options().ReadTimeout
	}
	return 0
}

func replyChunkFor(rt time.Duration) time.Duration {
	if rt > 0 && rt/2 < time.Second {
		return max(rt/2, 10*time.Millisecond)
	}
	return time.Second
}

// Config returns the effective configuration (defaults filled in).
func (r *Registry) Config() Config { return r.cfg }

// Ping checks that Redis answers.
func (r *Registry) Ping(ctx context.Context) error {
	return wrapName("ping", "", r.rdb.Ping(ctx).Err())
}

// ServerVersion returns the detected Redis version ("7.0.15").
func (r *Registry) ServerVersion(ctx context.Context) (string, error) {
	f, err := r.feat(ctx)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d.%d.%d", f.version[0], f.version[1], f.version[2]), nil
}

// feat detects the server version once; a failed detection is retried on the next call.
func (r *Registry) feat(ctx context.Context) (*features, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.features != nil {
		return r.features, nil
	}
	info, err := r.rdb.Info(ctx, "server").Result()
	if err != nil {
		return nil, wrapName("detect server version", "", err)
	}
	v := parseVersion(info)
	r.features = featuresFor(v)
	return r.features, nil
}

func featuresFor(v [3]int) *features {
	atLeast := func(maj, min int) bool { return v[0] > maj || (v[0] == maj && v[1] >= min) }
	return &features{
		version:    v,
		autoClaim:  atLeast(6, 2),
		minID:      atLeast(6, 2),
		floatBlock: atLeast(6, 0),
		lag:        atLeast(7, 0),
	}
}

// parseVersion reads redis_version from INFO server (a ClusterClient may return one section per node;
// the first wins). Unknown versions count as 5.0.0, the oldest with streams, so we only use safe commands.
func parseVersion(info string) [3]int {
	v := [3]int{5, 0, 0}
	for _, line := range strings.Split(info, "\n") {
		s, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:")
		if !ok {
			continue
		}
		parts := strings.SplitN(s, ".", 3)
		for i := 0; i < len(parts) && i < 3; i++ {
			n, err := strconv.Atoi(strings.TrimFunc(parts[i], func(r rune) bool { return r < '0' || r > '9' }))
			if err != nil {
				return v
			}
			v[i] = n
		}
		return v
	}
	return v
}
