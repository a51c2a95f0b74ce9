package n8nproto

import (
	"io"
	"reflect"

	"github.com/gorilla/websocket"
)

// Reading a message into one buffer of its size. gorilla's ReadMessage reads a message through
// io.ReadAll, which does not know the size: for a message of n bytes it allocates about 2.4n (its
// growing chunks, then the final copy), and holds 2n at the moment of that copy, so a 30 MB data
// response cost a sidecar 60-70 MB for a moment. n8n and the official runner (Node's ws) send a
// message as one frame, and gorilla has read that frame's length from its header by the time
// NextReader returns; gorilla does not export it, so frameFields reads it from the Conn by
// reflection (read-only, the way fmt prints unexported fields). When the fields are not there (a
// gorilla version that renamed them: TestReadMessageKnowsTheFrameSize fails then), the message is
// fragmented or compressed (the sidecar negotiates no compression), readMessage reads it like
// ReadMessage does.

// frameFields are the indexes of gorilla Conn's fields that describe the frame being read.
type frameFields struct {
	ok                           bool
	remaining, final, decompress []int
}

// gorillaFrame is looked up once; it is never written after.
var gorillaFrame = lookupFrameFields()

func lookupFrameFields() frameFields {
	t := reflect.TypeFor[websocket.Conn]()
	field := func(name string, kind reflect.Kind) []int {
		f, ok := t.FieldByName(name)
		if !ok || f.Type.Kind() != kind {
			return nil
		}
		return f.Index
	}
	v := frameFields{
		remaining:  field("readRemaining", reflect.Int64),
		final:      field("readFinal", reflect.Bool),
		decompress: field("readDecompress", reflect.Bool),
	}
	v.ok = v.remaining != nil && v.final != nil && v.decompress != nil
	return v
}

// messageSize is the size of the message NextReader has just begun, when it is known: the message
// is one uncompressed frame whose payload is all still to be read. gorilla checked that length
// against the read limit before NextReader returned.
func (v frameFields) messageSize(ws *websocket.Conn) (int, bool) {
	if !v.ok {
		return 0, false
	}
	c := reflect.ValueOf(ws).Elem()
	if !c.FieldByIndex(v.final).Bool() || c.FieldByIndex(v.decompress).Bool() {
		return 0, false
	}
	n := c.FieldByIndex(v.remaining).Int()
	if n < 0 || int64(int(n)) != n {
		return 0, false
	}
	return int(n), true
}

// readMessage is ws.ReadMessage for the data messages of the protocol (text or binary alike),
// reading a message of known size into one buffer of exactly that size. On an error the bytes
// read so far come back with it, as from ReadMessage.
func readMessage(ws *websocket.Conn) ([]byte, error) {
	_, r, err := ws.NextReader()
	if err != nil {
		return nil, err
	}
	n, known := gorillaFrame.messageSize(ws)
	if !known {
		return io.ReadAll(r)
	}
	buf := make([]byte, n)
	k, err := io.ReadFull(r, buf)
	if err != nil {
		return buf[:k], err
	}
	return buf, nil
}
