package n8nproto

import (
	"context"
	"sync"
)

// TaskConn is one task seen from one side: what the relay pumps between.
type TaskConn interface {
	// Send writes m to the peer; its TaskID is (re)written to this task's id.
	Send(ctx context.Context, m TaskMessage) error
	// Incoming delivers the peer's messages of this task; closed when the task ends or its connection is lost.
	Incoming() <-chan TaskMessage
}

// mailbox is an unbounded, ordered queue feeding a channel. The websocket read loops push into it and
// must never block (a blocked read loop cannot answer pings), so a slow consumer only costs memory.
type mailbox struct {
	out chan TaskMessage

	mu        sync.Mutex
	queue     []TaskMessage
	closed    bool // no more pushes; deliver what is queued, then close out
	abandoned bool // consumer is gone: drop the queue, close out
	wake      chan struct{}
}

func newMailbox() *mailbox {
	m := &mailbox{out: make(chan TaskMessage), wake: make(chan struct{}, 1)}
	go m.pump()
	return m
}

func (m *mailbox) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// push queues msg; false when the mailbox is already closed.
func (m *mailbox) push(msg TaskMessage) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.abandoned {
		return false
	}
	m.queue = append(m.queue, msg)
	m.signal()
	return true
}

// close ends the mailbox after the queued messages are delivered.
func (m *mailbox) close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.signal()
}

// abandon ends the mailbox now, dropping queued messages.
func (m *mailbox) abandon() {
	m.mu.Lock()
	m.abandoned = true
	m.queue = nil
	m.mu.Unlock()
	m.signal()
}

func (m *mailbox) pump() {
	defer close(m.out)
	for {
		m.mu.Lock()
		if m.abandoned {
			m.mu.Unlock()
			return
		}
		if len(m.queue) == 0 {
			closed := m.closed
			m.mu.Unlock()
			if closed {
				return
			}
			<-m.wake
			continue
		}
		msg := m.queue[0]
		m.queue[0] = nil
		m.queue = m.queue[1:]
		m.mu.Unlock()
		for delivered := false; !delivered; {
			select {
			case m.out <- msg:
				delivered = true
			case <-m.wake:
				m.mu.Lock()
				gone := m.abandoned
				m.mu.Unlock()
				if gone {
					return
				}
			}
		}
	}
}
