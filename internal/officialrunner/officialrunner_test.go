package officialrunner

import (
	"context"
	"strings"
	"testing"
)

func TestDirRejectsBadOverride(t *testing.T) {
	t.Setenv("N8N_FN_TASK_RUNNER_DIR", t.TempDir())
	if _, err := Dir(context.Background()); err == nil || !strings.Contains(err.Error(), "dist/start.js") {
		t.Fatalf("Dir with an empty override = %v", err)
	}
}

func TestStartNeedsGrant(t *testing.T) {
	if _, err := Start(context.Background(), t.TempDir(), Options{BrokerURI: "http://127.0.0.1:1"}); err == nil {
		t.Fatal("Start without a grant token succeeded")
	}
}

// The runner starts and, with a broker that is not there, exits 1 as n8n documents.
func TestRunnerExitsWithoutBroker(t *testing.T) {
	dir := Require(t)
	p := StartT(t, dir, Options{BrokerURI: "http://127.0.0.1:1", GrantToken: "nope"})
	<-p.Done()
	if c := p.ExitCode(); c != 1 {
		t.Fatalf("exit code %d, want 1", c)
	}
}
