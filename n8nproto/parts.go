package n8nproto

import (
	"context"
	"encoding/json"
)

// Parts is one JSON value written as its parts one after the other. A task's big result is made
// of items that live in other buffers (n8n's data response, a reply read from Redis): DoneParts
// writes the parts to the socket as they are, so the result is never joined into a buffer of its
// own (which held a 30 MB result a second time while it was sent). Whoever builds Parts makes them
// one valid JSON value no deeper than DefaultMaxFrameDepth less the frame's own two levels: unlike
// Done, DoneParts does not parse what it sends (glue between values is not JSON by itself).
type Parts [][]byte

// Len is the length of the value the parts make.
func (p Parts) Len() int {
	n := 0
	for _, b := range p {
		n += len(b)
	}
	return n
}

// JSON is the value joined into one buffer (the part itself when there is one).
func (p Parts) JSON() json.RawMessage {
	if len(p) == 1 {
		return p[0]
	}
	out := make([]byte, 0, p.Len())
	for _, b := range p {
		out = append(out, b...)
	}
	return out
}

// doneParts is a runner:taskdone whose data is Parts; only DoneParts sends one.
type doneParts struct {
	TaskID string
	Data   Parts
}

func (doneParts) MessageType() string { return TypeTaskDone }
func (m doneParts) TaskKey() string   { return m.TaskID }

// DoneParts is Done with the data as parts: {"result":[...]} written to n8n part by part.
func (t *UpstreamTask) DoneParts(ctx context.Context, data Parts) error {
	if len(data) <= 1 {
		return t.Done(ctx, data.JSON())
	}
	return t.finish(ctx, doneParts{TaskID: t.ID, Data: data})
}

// sendDoneParts writes m as one message: the frame's head, each part, its closing brace.
func (c *wsConn) sendDoneParts(ctx context.Context, m doneParts) error {
	head, err := fastHead(TypeTaskDone, [][2]string{{"taskId", m.TaskID}}, "", nil, "n8nproto: encode "+TypeTaskDone)
	if err != nil {
		return err
	}
	head = append(head, `,"data":`...)
	parts := make([][]byte, 0, len(m.Data)+2)
	parts = append(append(append(parts, head), m.Data...), []byte("}"))
	err = c.sendParts(ctx, TypeTaskDone, parts...)
	returnReadGarbage(m.Data.Len()) // see send
	return err
}
