package n8nproto

import (
	"net"
	"sync"
	"time"
)

// n8n's own task broker (packages/cli/src/task-runners/task-broker/task-broker-server.ts, n8n
// 2.41) allows 5 POST /runners/auth per second per client (express-rate-limit, windowMs 1000,
// limit 5) and 5 websocket upgrades per second (a sliding window). The broker role here uses the
// same numbers but counts only failed attempts, per client address: a runner that knows the token
// needs one auth and one upgrade per connect and is never slowed by somebody else's flood of
// wrong tokens.
const (
	defaultAuthFailLimit  = 5
	defaultAuthFailWindow = time.Second
	// maxTrackedClients bounds the limiter's memory under a flood from many addresses; beyond it
	// every new address shares one bucket.
	maxTrackedClients = 4096
)

// failLimiter is a sliding-window count of failures per client address.
type failLimiter struct {
	limit  int
	window time.Duration

	mu      sync.Mutex
	clients map[string][]time.Time // address -> times of its failures within the window, oldest first
}

func newFailLimiter(limit int, window time.Duration) *failLimiter {
	return &failLimiter{limit: limit, window: window, clients: map[string][]time.Time{}}
}

// clientKey is the address a request's failures are counted under: its IP without the port.
func clientKey(remoteAddr string) string {
	if host, _, err := net.SplitHostPort(remoteAddr); err == nil {
		return host
	}
	return remoteAddr
}

// limited reports whether client had limit failures within the window (n8n's isRateLimited, for
// failures only): its request is then refused without being looked at.
func (l *failLimiter) limited(client string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recentLocked(client, now)) >= l.limit
}

// fail records one failure of client; it reports whether this failure used up the window (the
// moment to log once that the client is being refused).
func (l *failLimiter) fail(client string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, known := l.clients[client]; !known && len(l.clients) >= maxTrackedClients {
		l.pruneLocked(now)
		if len(l.clients) >= maxTrackedClients {
			client = "(many clients)"
		}
	}
	ts := append(l.recentLocked(client, now), now)
	l.clients[client] = ts
	return len(ts) == l.limit
}

func (l *failLimiter) recentLocked(client string, now time.Time) []time.Time {
	ts := l.clients[client]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= l.window {
		i++
	}
	if i == len(ts) {
		delete(l.clients, client)
		return nil
	}
	ts = ts[i:]
	l.clients[client] = ts
	return ts
}

func (l *failLimiter) pruneLocked(now time.Time) {
	for c := range l.clients {
		l.recentLocked(c, now)
	}
}
