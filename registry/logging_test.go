package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// With Redis down, go-redis's own complaints come out through logrus: with the JSON formatter every
// line is one JSON object, so N8N_FN_LOG_FORMAT=json stays machine-readable.
func TestGoRedisLogsThroughLogrus(t *testing.T) {
	var out syncBuffer
	l := logrus.New()
	l.SetOutput(&out)
	l.SetFormatter(&logrus.JSONFormatter{})
	UseLogrus(logrus.NewEntry(l).WithField("sidecar", "t"))
	t.Cleanup(func() { // go-redis's logger is per process: leave one that writes to stderr
		back := logrus.New()
		back.SetOutput(os.Stderr)
		UseLogrus(logrus.NewEntry(back))
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now: Redis is down
	c, err := NewClient("redis://"+addr+"/0?dial_timeout=200ms&max_retries=0", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("ping of a closed port succeeded")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "failed to dial") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	text := strings.TrimSpace(out.String())
	if !strings.Contains(text, "failed to dial") {
		t.Fatalf("go-redis logged nothing through logrus: %q", text)
	}
	for _, line := range strings.Split(text, "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("line is not JSON: %q (%v)", line, err)
		}
		if rec["component"] != "go-redis" || rec["level"] != "warning" || rec["sidecar"] != "t" {
			t.Errorf("line %q lacks the fields", line)
		}
		if msg, _ := rec["msg"].(string); strings.HasPrefix(msg, "redis: ") || strings.HasSuffix(msg, "\n") {
			t.Errorf("message %q keeps go-redis's prefix or newline", msg)
		}
	}
}

// A bad Redis URL is reported without its password (the error ends up in logs).
func TestNewClientErrorsHideThePassword(t *testing.T) {
	for _, u := range []string{"redis://user:s3cret@host:6379/0?pool_size=x", "redis+sentinel://:s3cret@host:26379", "redis+bogus://u:s3cret@h"} {
		_, err := NewClient(u, 0)
		if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), ":xxxxx@") {
			t.Errorf("NewClient(%q) = %v", u, err)
		}
	}
}
