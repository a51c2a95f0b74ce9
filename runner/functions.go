package runner

import (
	"context"
	"sync"

	"github.com/sirupsen/logrus"
)

// functions is the function runtime (call/function/return ops, dispatcher, recoverer, heartbeat).
// This is the empty stub the sidecar is wired against; helper "functions" owns and fills it.
type functions struct{}

// newFunctions builds the runtime from the sidecar's configuration. The stub needs nothing.
func newFunctions(_ Config, _ *logrus.Entry) (*functions, error) {
	return &functions{}, nil
}

// ops returns the native ops the runtime serves, keyed by directive op name.
func (f *functions) ops() map[string]nativeOp {
	return map[string]nativeOp{}
}

// start launches the runtime's background duties; each one calls wg.Done when ctx ends.
func (f *functions) start(_ context.Context, _ *sync.WaitGroup) {}

// shutdown stops the background duties after the sidecar's tasks have drained.
func (f *functions) shutdown(_ context.Context) {}

// ready reports why the runtime cannot serve functions yet (nil = ready); part of /readyz.
func (f *functions) ready() error { return nil }
