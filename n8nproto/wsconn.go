package n8nproto

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// defaultWriteTimeout bounds one frame write when the caller's context has no earlier deadline.
const defaultWriteTimeout = 30 * time.Second

// ErrConnectionClosed is returned when sending on a websocket that is closed or lost.
var ErrConnectionClosed = errors.New("n8nproto: connection closed")

// wsConn serialises writes on one gorilla connection (gorilla allows one concurrent writer).
type wsConn struct {
	ws *websocket.Conn

	mu     sync.Mutex
	closed bool
}

func newWSConn(ws *websocket.Conn) *wsConn { return &wsConn{ws: ws} }

func (c *wsConn) send(ctx context.Context, m Message) error {
	data, err := Encode(m)
	if err != nil {
		return err
	}
	return c.sendRaw(ctx, m.MessageType(), data)
}

func (c *wsConn) sendRaw(ctx context.Context, typ string, data []byte) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("send %s: %w", typ, err)
	}
	deadline := time.Now().Add(defaultWriteTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("send %s: %w", typ, ErrConnectionClosed)
	}
	_ = c.ws.SetWriteDeadline(deadline)
	if err := c.ws.WriteMessage(websocket.TextMessage, data); err != nil {
		return fmt.Errorf("send %s: %w: %v", typ, ErrConnectionClosed, err)
	}
	return nil
}

// ping sends a ping control frame (safe concurrently with writes).
func (c *wsConn) ping(timeout time.Duration) error {
	return c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(timeout))
}

// closeWith sends a close frame (best effort) and closes the socket; idempotent.
func (c *wsConn) closeWith(code int, reason string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	_ = c.ws.Close()
}

// markClosed records that the socket is gone (read loop ended) and closes it.
func (c *wsConn) markClosed() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	_ = c.ws.Close()
}
