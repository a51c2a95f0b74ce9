package n8nproto

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"
)

// dataResponseFrame is the captured broker:taskdataresponse with n input items.
func dataResponseFrame(b *testing.B, n int) []byte {
	d := capturedDataResponse(b)
	items := make([]map[string]any, n)
	for i := range items {
		items[i] = map[string]any{"json": map[string]any{"id": i, "name": "item " + strconv.Itoa(i), "tags": []string{"a", "b"}, "nested": map[string]any{"x": 1.5, "ok": true}}, "pairedItem": map[string]any{"item": i}}
	}
	d["inputData"] = map[string]any{"main": [][]map[string]any{items}}
	frame, err := Encode(TaskDataResponse{TaskID: "O7oSIX3E", RequestID: "OLRRlNC9mNx2KrcBeKPnP", Data: rawJSON(b, d)})
	if err != nil {
		b.Fatal(err)
	}
	return frame
}

func BenchmarkDecodeDataResponse(b *testing.B) {
	for _, n := range []int{1, 1000} {
		frame := dataResponseFrame(b, n)
		b.Run(fmt.Sprintf("items=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(frame); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncodeDataResponse(b *testing.B) {
	for _, n := range []int{1, 1000} {
		m, err := Decode(dataResponseFrame(b, n))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("items=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(m.(TaskDataResponse).Data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Encode(m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBrokerRoundTrip is the per-task overhead of the protocol machinery: Acquire on our Broker,
// our Runner accepts, gets settings, pulls its data (one data request/response) and completes, over real
// websockets on loopback.
func BenchmarkBrokerRoundTrip(b *testing.B) {
	bs := startBroker(b, BrokerConfig{}, "")
	data := dataResponseFrame(b, 1)
	m, _ := Decode(data)
	payload := m.(TaskDataResponse).Data
	cfg := fastRunnerConfig(b, bs.url(), 4)
	cfg.OfferValidFor = 5 * time.Second
	cfg.OfferInterval = 250 * time.Millisecond // n8n's default; freed slots are re-offered at once anyway
	startRunner(b, cfg, handlerFunc(func(ctx context.Context, t *UpstreamTask) {
		if _, err := t.RequestData(ctx, json.RawMessage(`{"dataOfNodes":[],"env":false,"input":{"include":true},"prevNode":false}`)); err != nil {
			_ = t.Fail(ctx, errorJSON(err.Error()))
			return
		}
		_ = t.Done(ctx, json.RawMessage(`{"result":[{"json":{"ok":true}}]}`))
	}))
	ctx := context.Background()
	waitFor(b, "offers", 5*time.Second, func() bool { return bs.b.openOffers("javascript") > 0 })
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		dt, err := bs.b.Acquire(ctx, "javascript", "bench-"+strconv.Itoa(i), codeSettings)
		if err != nil {
			b.Fatal(err)
		}
		for m := range dt.Incoming() {
			switch v := m.(type) {
			case TaskDataRequest:
				if err := dt.Send(ctx, TaskDataResponse{RequestID: v.RequestID, Data: payload}); err != nil {
					b.Fatal(err)
				}
			case TaskError:
				b.Fatalf("task failed: %s", v.Error)
			}
		}
	}
}
