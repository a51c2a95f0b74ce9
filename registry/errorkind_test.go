package registry

import (
	"encoding/json"
	"testing"
)

// TestErrorKindWireValues: error kinds travel in the stored reply JSON between sidecars of
// different versions during a rolling update, so their strings must not change with a rename.
func TestErrorKindWireValues(t *testing.T) {
	for kind, wire := range map[ErrorKind]string{
		ErrorKindParams: "params", ErrorKindFailed: "failed", ErrorKindTimeout: "timeout",
		ErrorKindNoReturn: "no_return", ErrorKindNotFound: "not_found", ErrorKindExpired: "expired",
		ErrorKindDispatch: "dispatch", ErrorKindDeadLetter: "dead_letter", ErrorKindRemoved: "function_removed",
	} {
		b, err := json.Marshal(Reply{CallID: "c", ErrorKind: kind})
		if err != nil {
			t.Fatal(err)
		}
		var back struct {
			ErrorKind string `json:"errorKind"`
		}
		if err := json.Unmarshal(b, &back); err != nil || back.ErrorKind != wire {
			t.Errorf("%s is %q on the wire (%v), want %q", kind, back.ErrorKind, err, wire)
		}
		var rep Reply
		if err := json.Unmarshal(b, &rep); err != nil || rep.ErrorKind != kind {
			t.Errorf("%s does not decode back: %+v %v", kind, rep, err)
		}
	}
}
