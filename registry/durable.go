package registry

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// A Sentinel failover (SENTINEL FAILOVER, or a master that Sentinel sees down) promotes a replica
// with REPLICAOF NO ONE; the clients learn of it only when Sentinel announces +switch-master about
// a second later, and the old master keeps accepting writes until Sentinel turns it into a replica
// of the new one several seconds after that, when it throws away everything it took in between.
// A call queued or answered in that window is lost, and WAIT alone cannot prevent that: it can only
// say that the write did not reach a replica. durable acts on what WAIT says.

// defaultFailoverWindow bounds how long a write that no replica confirmed waits for the failover
// that may be under way to finish (the clients switch within about a second of the promotion).
const defaultFailoverWindow = 5 * time.Second

// durable runs write. With WaitReplicas (a Sentinel deployment) it runs write and WAIT on one
// connection, since WAIT only counts the writes of its own connection. When fewer replicas than
// WaitReplicas confirm it, the write is at risk: the master it reached may be one that a failover
// is replacing. durable then watches the master the client talks to, for at most the failover
// window: when the client has switched to another master, write runs again there (redo true: it
// must not do twice what the first run may already have done there); when the old master has
// replicas again, its writes reach them and nothing is redone. After the window, a master that
// still has no replica is taken as one that runs without (its replica is down): writes to it do not
// wait for the window again until a replica confirms a write, so a dead replica costs each write
// a short WAIT, not the window.
func (r *Registry) durable(ctx context.Context, write func(ctx context.Context, c redis.Cmdable, redo bool) error) error {
	cl, ok := r.rdb.(*redis.Client)
	if r.cfg.WaitReplicas <= 0 || !ok {
		return write(ctx, r.rdb, false)
	}
	var risky string // the node the first write reached, when no replica confirmed it
	var until time.Time
	for redo := false; ; redo = true {
		acked, node, err := r.writeAndWait(ctx, cl, func(c redis.Cmdable) error { return write(ctx, c, redo) })
		switch {
		case err != nil:
			return err
		case acked >= r.cfg.WaitReplicas:
			r.setWithoutReplicas("")
			return nil
		case node == "":
			return nil // cannot tell which node it was: best effort
		case redo && node != risky:
			return nil // written again on the master the client switched to
		case !redo:
			if r.withoutReplicas() == node {
				return nil // this master runs without replicas: nothing better to be had
			}
			risky, until = node, time.Now().Add(r.cfg.FailoverWindow)
		}
		next, settled := r.awaitFailover(ctx, risky, until)
		if next == "" {
			if !settled && ctx.Err() == nil {
				r.setWithoutReplicas(risky)
			}
			return nil
		}
		// The new master has no replica until Sentinel turns the old one into its replica and
		// that has resynchronised: writes to it cannot be confirmed for a while, and need not wait.
		r.setWithoutReplicas(next)
	}
}

// writeAndWait runs write and WAIT on one connection and returns how many replicas confirmed the
// write; when fewer than WaitReplicas did, also the run id of the node it reached.
func (r *Registry) writeAndWait(ctx context.Context, cl *redis.Client, write func(c redis.Cmdable) error) (int, string, error) {
	conn := cl.Conn()
	defer conn.Close()
	if err := write(conn); err != nil {
		return 0, "", err
	}
	timeout := r.cfg.WaitTimeout
	if r.withoutReplicas() != "" {
		// Probably on the master seen without replicas (a new master whose old one is not its
		// replica yet, ~10 s after a failover; or a dead replica): a replica that is back answers
		// WAIT within milliseconds, and the others need not pay the full timeout each write.
		timeout = min(timeout, 10*time.Millisecond)
	}
	acked, err := conn.Do(ctx, "WAIT", r.cfg.WaitReplicas, max(timeout.Milliseconds(), 1)).Int()
	if err != nil || acked >= r.cfg.WaitReplicas {
		return acked, "", nil // a failed WAIT is not a failed write
	}
	id, _, err := nodeState(ctx, conn)
	if err != nil {
		return acked, "", nil
	}
	return acked, id, nil
}

// awaitFailover watches the master the client talks to until another node answers as master (its
// run id is returned) or the risky node has WaitReplicas replicas again or turns out to be the
// master a failover switched to (settled), polling until until.
func (r *Registry) awaitFailover(ctx context.Context, risky string, until time.Time) (next string, settled bool) {
	for {
		id, replicas, err := nodeState(ctx, r.rdb)
		switch {
		case err != nil:
			// The client may be reconnecting to the new master: keep watching.
		case id != risky:
			return id, false
		case replicas >= r.cfg.WaitReplicas || r.withoutReplicas() == risky:
			return "", true
		}
		left := time.Until(until)
		if left <= 0 {
			return "", false
		}
		t := time.NewTimer(min(100*time.Millisecond, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return "", false
		case <-t.C:
		}
	}
}

// nodeState returns the run id of the master c reaches and how many replicas are connected to it
// (INFO server and INFO replication; Redis before 7 takes one section per INFO). A node that is
// not a master any more answers with an error (the write it took is the one at risk).
func nodeState(ctx context.Context, c redis.Cmdable) (string, int, error) {
	var server, repl *redis.StringCmd
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		server = p.Info(ctx, "server")
		repl = p.Info(ctx, "replication")
		return nil
	}); err != nil {
		return "", 0, err
	}
	id := infoField(server.Val(), "run_id")
	if id == "" {
		return "", 0, errors.New("INFO server has no run_id")
	}
	if role := infoField(repl.Val(), "role"); role != "master" {
		return "", 0, errors.New("the node is a " + role + ", not a master")
	}
	n, _ := strconv.Atoi(infoField(repl.Val(), "connected_slaves"))
	return id, n, nil
}

// infoField is the value of name in an INFO answer ("" when absent).
func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

func (r *Registry) withoutReplicas() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.noReplicas
}

func (r *Registry) setWithoutReplicas(node string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.noReplicas = node
}

// FollowsFailovers reports whether writes wait for replicas and survive a Sentinel failover
// (WaitReplicas on a standalone or Sentinel client): then MasterID tells when one happened.
func (r *Registry) FollowsFailovers() bool {
	_, ok := r.rdb.(*redis.Client)
	return ok && r.cfg.WaitReplicas > 0
}

// MasterID returns the run id of the master the client talks to now. It changes when a Sentinel
// failover switched the client to another master, whose data may lack what the old one took just
// before: heartbeats and registrations are then written again at once. "" when the registry does
// not follow failovers (FollowsFailovers).
func (r *Registry) MasterID(ctx context.Context) (string, error) {
	if !r.FollowsFailovers() {
		return "", nil
	}
	id, _, err := nodeState(ctx, r.rdb)
	return id, wrapName("master id", "", err)
}
