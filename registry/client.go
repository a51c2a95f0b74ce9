package registry

import (
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// NewClient builds a go-redis client from a URL, so every command of the project accepts the same
// forms for N8N_FN_REDIS_URL:
//
//	redis://[user:pass@]host:port/db            standalone (rediss:// for TLS)
//	redis+cluster://host:port?addr=host2:port2  Redis Cluster (rediss+cluster:// for TLS)
//	redis+sentinel://host:port?master_name=m    Sentinel (rediss+sentinel:// for TLS)
//
// Query parameters are go-redis's (dial_timeout, read_timeout, pool_size, ...). poolSize > 0
// overrides the pool size: every caller blocked in WaitReplies and every dispatcher blocked in
// ReadCalls holds a connection, so size it above their sum.
func NewClient(url string, poolSize int) (redis.UniversalClient, error) {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return nil, fmt.Errorf("%w: redis URL %q: want redis://host:port/db, redis+cluster://host:port or redis+sentinel://host:port?master_name=NAME", ErrInvalid, url)
	}
	base, mode, _ := strings.Cut(scheme, "+")
	if base != "redis" && base != "rediss" {
		return nil, fmt.Errorf("%w: redis URL %q: unknown scheme %q (want redis, rediss, redis+cluster, redis+sentinel)", ErrInvalid, url, scheme)
	}
	plain := base + "://" + rest
	switch mode {
	case "":
		opt, err := redis.ParseURL(plain)
		if err != nil {
			return nil, fmt.Errorf("%w: redis URL %q: %v", ErrInvalid, url, err)
		}
		if poolSize > 0 {
			opt.PoolSize = poolSize
		}
		return redis.NewClient(opt), nil
	case "cluster":
		opt, err := redis.ParseClusterURL(plain)
		if err != nil {
			return nil, fmt.Errorf("%w: redis cluster URL %q: %v", ErrInvalid, url, err)
		}
		if poolSize > 0 {
			opt.PoolSize = poolSize
		}
		return redis.NewClusterClient(opt), nil
	case "sentinel":
		opt, err := redis.ParseFailoverURL(plain)
		if err != nil {
			return nil, fmt.Errorf("%w: redis sentinel URL %q: %v", ErrInvalid, url, err)
		}
		if opt.MasterName == "" {
			return nil, fmt.Errorf("%w: redis sentinel URL %q needs ?master_name=NAME", ErrInvalid, url)
		}
		if poolSize > 0 {
			opt.PoolSize = poolSize
		}
		return redis.NewFailoverClient(opt), nil
	}
	return nil, fmt.Errorf("%w: redis URL %q: unknown mode %q (want cluster or sentinel)", ErrInvalid, url, mode)
}
