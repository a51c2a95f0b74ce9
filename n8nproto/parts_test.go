package n8nproto

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// DoneParts delivers the value its parts make, as one runner:taskdone, however they are cut
// (here around a 3 MiB item, so it goes to the socket in several writes).
func TestDonePartsSendsTheJoinedValue(t *testing.T) {
	big := []byte(`{"s":"` + strings.Repeat("r", 3<<20) + `"}`)
	cases := []Parts{
		{[]byte(`{"result":[{"json":`), big, []byte(`,"pairedItem":{"item":0}},{"json":{"i":1},"pairedItem":{"item":1}}]}`)},
		{[]byte(`{"result":[]}`)},
		{[]byte(`{"res`), []byte(`ult":[{"json":{"a":"b`), []byte(`"}}]}`)},
	}
	bs := startBroker(t, BrokerConfig{}, "")
	next := make(chan Parts, 1)
	handler := handlerFunc(func(ctx context.Context, task *UpstreamTask) {
		if err := task.DoneParts(ctx, <-next); err != nil {
			t.Errorf("DoneParts: %v", err)
		}
	})
	startRunner(t, fastRunnerConfig(t, bs.url(), 1), handler)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i, p := range cases {
		dt, err := bs.b.Acquire(ctx, "javascript", "parts-"+string(rune('a'+i)), codeSettings)
		if err != nil {
			t.Fatal(err)
		}
		next <- p
		var done TaskDone
		select {
		case m := <-dt.Incoming():
			var ok bool
			if done, ok = m.(TaskDone); !ok {
				t.Fatalf("case %d: got %T, want TaskDone", i, m)
			}
		case <-ctx.Done():
			t.Fatalf("case %d: no answer", i)
		}
		if want := p.JSON(); string(done.Data) != string(want) || !json.Valid(done.Data) {
			t.Fatalf("case %d: data of %d bytes, want the %d bytes of the parts", i, len(done.Data), len(want))
		}
	}
}
