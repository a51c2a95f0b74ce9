package n8nproto

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"
)

// BrokerConfig configures the broker role for runners behind the sidecar.
type BrokerConfig struct {
	AuthToken         string        // token for POST /runners/auth; empty = random (only MintGrant works)
	GrantTTL          time.Duration // 30s
	HeartbeatInterval time.Duration // 30s
	AcceptTimeout     time.Duration // 2s
	MaxPayload        int64         // 1 GiB
	Logger            *logrus.Entry
}

// Broker is the broker role (stub, being written).
type Broker struct{ cfg BrokerConfig }

// ErrDraining is returned by Acquire after Drain started.
var ErrDraining = errors.New("n8nproto: broker is draining")

func NewBroker(cfg BrokerConfig) (*Broker, error) { return &Broker{cfg: cfg}, nil }

func (b *Broker) Handler() http.Handler { return http.NotFoundHandler() }

func (b *Broker) MintGrant() string { return randomHex(32) }

func (b *Broker) HasRunner(taskType string) bool { return false }

func (b *Broker) Acquire(ctx context.Context, taskType, taskID string, settings json.RawMessage) (*DownstreamTask, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (b *Broker) Drain(ctx context.Context) error { return nil }

// DownstreamTask is one task handed to a runner behind the sidecar.
type DownstreamTask struct{ ID string }

func (t *DownstreamTask) Send(ctx context.Context, m TaskMessage) error { return ErrConnectionClosed }
func (t *DownstreamTask) Incoming() <-chan TaskMessage                  { return nil }
func (t *DownstreamTask) Cancel(ctx context.Context, reason string) error {
	return nil
}
func (t *DownstreamTask) Err() error { return nil }
