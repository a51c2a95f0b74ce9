package registry

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"
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
	shown := redactURL(url) // errors are logged: never with the password
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return nil, fmt.Errorf("%w: redis URL %q: want redis://host:port/db, redis+cluster://host:port or redis+sentinel://host:port?master_name=NAME", ErrInvalid, shown)
	}
	base, mode, _ := strings.Cut(scheme, "+")
	if base != "redis" && base != "rediss" {
		return nil, fmt.Errorf("%w: redis URL %q: unknown scheme %q (want redis, rediss, redis+cluster, redis+sentinel)", ErrInvalid, shown, scheme)
	}
	plain := base + "://" + rest
	switch mode {
	case "":
		opt, err := redis.ParseURL(plain)
		if err != nil {
			return nil, fmt.Errorf("%w: redis URL %q: %v", ErrInvalid, shown, err)
		}
		if poolSize > 0 {
			opt.PoolSize = poolSize
		}
		return redis.NewClient(opt), nil
	case "cluster":
		opt, err := redis.ParseClusterURL(plain)
		if err != nil {
			return nil, fmt.Errorf("%w: redis cluster URL %q: %v", ErrInvalid, shown, err)
		}
		if poolSize > 0 {
			opt.PoolSize = poolSize
		}
		return redis.NewClusterClient(opt), nil
	case "sentinel":
		opt, err := redis.ParseFailoverURL(plain)
		if err != nil {
			return nil, fmt.Errorf("%w: redis sentinel URL %q: %v", ErrInvalid, shown, err)
		}
		if opt.MasterName == "" {
			return nil, fmt.Errorf("%w: redis sentinel URL %q needs ?master_name=NAME", ErrInvalid, shown)
		}
		if poolSize > 0 {
			opt.PoolSize = poolSize
		}
		return redis.NewFailoverClient(opt), nil
	}
	return nil, fmt.Errorf("%w: redis URL %q: unknown mode %q (want cluster or sentinel)", ErrInvalid, shown, mode)
}

// redactURL is url with the password of its user info replaced, for error messages.
func redactURL(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	auth, host, ok := strings.Cut(rest, "@")
	if !ok || strings.ContainsAny(auth, "/?") {
		return url
	}
	if user, _, hasPass := strings.Cut(auth, ":"); hasPass {
		return scheme + "://" + user + ":xxxxx@" + host
	}
	return url
}

// redisLogger hands go-redis's own log lines (a failed dial, a sentinel switch) to logrus, so they
// come out in the sidecar's format (N8N_FN_LOG_FORMAT=json stays one JSON object per line) instead
// of go-redis's "redis: 2006/01/02 pool.go:770: ..." text on stderr.
type redisLogger struct{ log *logrus.Entry }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	// go-redis logs what went wrong with the connection, never command arguments.
	l.log.Warn(strings.TrimSpace(strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: ")))
}

// UseLogrus routes go-redis's logging through log (field component=go-redis, level warning).
// go-redis has one logger per process: call this once at startup, before any client is made.
func UseLogrus(log *logrus.Entry) {
	redis.SetLogger(redisLogger{log: log.WithField("component", "go-redis")})
}
