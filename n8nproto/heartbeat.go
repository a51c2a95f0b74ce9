package n8nproto

import (
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// startHeartbeat pings the runner every HeartbeatInterval and drops the connection (1002) when no pong
// came since the previous ping: n8n's own rule. Pongs are read by the connection's read loop, so this
// must be called before that loop starts.
func (rc *runnerConn) startHeartbeat() {
	var mu sync.Mutex
	pongSeen := true
	rc.conn.ws.SetPongHandler(func(string) error {
		mu.Lock()
		pongSeen = true
		mu.Unlock()
		return nil
	})
	go rc.heartbeat(func() bool {
		mu.Lock()
		defer mu.Unlock()
		ok := pongSeen
		pongSeen = false
		return ok
	})
}

// heartbeat is the ping loop; takePong reports (and resets) whether a pong came since the last ping.
func (rc *runnerConn) heartbeat(takePong func() bool) {
	t := time.NewTicker(rc.b.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-rc.done:
			return
		case <-t.C:
		}
		if !takePong() {
			rc.log.Warn("runner missed a heartbeat pong; disconnecting")
			rc.conn.closeWith(websocket.CloseProtocolError, "failed-heartbeat-check")
			return
		}
		if err := rc.conn.ping(5 * time.Second); err != nil {
			rc.conn.closeWith(websocket.CloseProtocolError, "failed-heartbeat-check")
			return
		}
	}
}
