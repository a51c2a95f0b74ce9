package n8nproto

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
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
	if dp, ok := m.(doneParts); ok {
		return c.sendDoneParts(ctx, dp)
	}
	// A big payload (task data, a result) goes to the socket as it is: head, payload, "}" written
	// into one message, so the sidecar never holds a second, frame-sized copy of it.
	if head, payload, ok, err := encodeFastParts(m); ok {
		if err != nil {
			return err
		}
		if len(payload) >= streamPayloadMin {
			err := c.sendParts(ctx, m.MessageType(), head, payload, []byte("}"))
			// What built a big payload (a reply read from Redis, a result encoded) is garbage by
			// now, and the next step of the workflow may send the payload right back.
			returnReadGarbage(len(payload))
			return err
		}
	}
	data, err := Encode(m)
	if err != nil {
		return err
	}
	return c.sendRaw(ctx, m.MessageType(), data)
}

// streamPayloadMin is the payload size from which send writes the parts instead of one buffer.
const streamPayloadMin = 1 << 20

func (c *wsConn) sendRaw(ctx context.Context, typ string, data []byte) error {
	return c.sendParts(ctx, typ, data)
}

// sendParts writes parts as one text message.
func (c *wsConn) sendParts(ctx context.Context, typ string, parts ...[]byte) error {
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
	if len(parts) == 1 {
		if err := c.ws.WriteMessage(websocket.TextMessage, parts[0]); err != nil {
			return fmt.Errorf("send %s: %w: %v", typ, ErrConnectionClosed, err)
		}
		return nil
	}
	w, err := c.ws.NextWriter(websocket.TextMessage)
	if err != nil {
		return fmt.Errorf("send %s: %w: %v", typ, ErrConnectionClosed, err)
	}
	for _, p := range parts {
		if _, err := w.Write(p); err != nil {
			_ = w.Close()
			return fmt.Errorf("send %s: %w: %v", typ, ErrConnectionClosed, err)
		}
	}
	if err := w.Close(); err != nil {
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

// bigMessage is the message size from which reading or sending it is followed by returnReadGarbage.
const bigMessage = 16 << 20

// returnReadGarbage collects and returns to the OS what the steps around a big message left
// behind: the message read before this one, a result encoded, a reply read from Redis (readMessage
// reads a message of known size into one buffer of its size; a fragmented one still costs about
// 2.4x through io.ReadAll). Without this the garbage of one 30 MB message was still there when the
// next arrived a moment later (Go's GC waits until the heap doubles), and a sidecar that relayed a
// 30 MB result and then read it back peaked at 160 MB. One GC per message of 16 MiB or more costs
// milliseconds, next to what reading it costs.
func returnReadGarbage(n int) {
	if n >= bigMessage {
		debug.FreeOSMemory()
	}
}
