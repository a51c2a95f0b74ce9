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
// must not do twice what the first run may already have done there); when replicas of the old
// master report its replication offset past the write, it is on them and nothing is redone. After
// the window, a master that still has no replica is taken as one that runs without (its replica is
// down), and so is a master the client was seen to switch to (it gets its replica back only ~10 s
// after the failover): writes to it do not wait for the window until a replica confirms a write,
// so a dead replica costs each write an INFO, not the window.
func (r *Registry) durable(ctx context.Context, write func(ctx context.Context, c redis.Cmdable, redo bool) error) error {
	return r.confirmed(ctx, false, write, nil)
}

// fresh runs read. With WaitReplicas, an answer doubt calls doubtful (a "not found" of something
// another sidecar wrote a moment ago) may come from an old master that a failover is replacing,
// and that lacks what the new master took since the promotion (sidecars switch one by one, within
// about a second): it is trusted when the master has a replica online, else read again on the new
// master if the client switches within the failover window.
func (r *Registry) fresh(ctx context.Context, read func(ctx context.Context, c redis.Cmdable) error, doubt func() bool) error {
	return r.confirmed(ctx, true, func(ctx context.Context, c redis.Cmdable, _ bool) error { return read(ctx, c) }, doubt)
}

// confirmed is durable (readOnly false) and fresh (readOnly true). A write whose answer doubt calls
// doubtful wrote nothing (a script refused) and is checked like a doubtful read.
func (r *Registry) confirmed(ctx context.Context, readOnly bool, write func(ctx context.Context, c redis.Cmdable, redo bool) error, doubt func() bool) error {
	cl, ok := r.rdb.(*redis.Client)
	if r.cfg.WaitReplicas <= 0 || !ok {
		return write(ctx, r.rdb, false)
	}
	var risky node // the node the first write reached, when no replica confirmed it
	var until time.Time
	for redo := false; ; redo = true {
		acked, at, waited, err := r.writeAndWait(ctx, cl, readOnly, func(c redis.Cmdable) error { return write(ctx, c, redo) }, doubt)
		switch {
		case err != nil:
			return err
		case acked >= r.cfg.WaitReplicas:
			if waited {
				r.setWithoutReplicas("") // replicas confirm writes again
			}
			return nil
		case redo && at.id != risky.id:
			return nil // written again on the master the client switched to
		case !redo:
			if r.withoutReplicas() == at.id {
				return nil // this master runs without replicas: nothing better to be had
			}
			risky, until = at, time.Now().Add(r.cfg.FailoverWindow)
		}
		next, settled := r.awaitFailover(ctx, risky, until)
		if next == "" {
			if !settled && ctx.Err() == nil {
				r.setWithoutReplicas(risky.id)
			}
			return nil
		}
		// The new master has no replica until Sentinel turns the old one into its replica and
		// that has resynchronised: writes to it cannot be confirmed for a while, and need not wait.
		r.setWithoutReplicas(next)
	}
}

// writeAndWait runs write and WAIT on one connection and returns how many replicas confirmed the
// write; when fewer than WaitReplicas did, also the node it reached, with a replication offset at
// or past the write.
func (r *Registry) writeAndWait(ctx context.Context, cl *redis.Client, readOnly bool, write func(c redis.Cmdable) error, doubt func() bool) (acked int, at node, waited bool, err error) {
	conn := cl.Conn()
	defer conn.Close()
	if err := write(conn); err != nil {
		return 0, node{}, false, err
	}
	switch {
	case doubt != nil && doubt():
		// Nothing was written; the answer is trusted from a master with replicas online.
		at, err := nodeState(ctx, conn)
		if err != nil {
			return 0, node{id: unknownNode}, false, nil
		}
		if len(at.replicas) >= r.cfg.WaitReplicas {
			return len(at.replicas), node{}, false, nil
		}
		at.offset = 0
		return 0, at, false, nil
	case readOnly:
		return r.cfg.WaitReplicas, node{}, false, nil
	}
	if without := r.withoutReplicas(); without != "" {
		// Probably on the master seen without replicas (a new master whose old one is not its
		// replica yet, ~10 s after a failover; or a dead replica): when it still has none, WAIT
		// would only time out (and a short timeout is no help: Redis checks it about every 100 ms).
		if at, err := nodeState(ctx, conn); err == nil && at.id == without && len(at.replicas) < r.cfg.WaitReplicas {
			return 0, at, false, nil
		}
	}
	acked, err = conn.Do(ctx, "WAIT", r.cfg.WaitReplicas, r.cfg.WaitTimeout.Milliseconds()).Int()
	if err != nil {
		return r.cfg.WaitReplicas, node{}, false, nil // a failed WAIT is not a failed write
	}
	if acked >= r.cfg.WaitReplicas {
		return acked, node{}, true, nil
	}
	at, err = nodeState(ctx, conn)
	if err != nil {
		// The node is no master any more, or went away: the write is at risk, on a node that
		// is not the one the client talks to next (so write runs again there).
		return acked, node{id: unknownNode}, false, nil
	}
	return acked, at, false, nil
}

// unknownNode stands for a node whose run id could not be read after a write.
const unknownNode = "?"

// awaitFailover watches the master the client talks to until another node answers as master (its
// run id is returned), or WaitReplicas replicas of the risky node report its offset at the write
// or the risky node turns out to be the master a failover switched to (settled), until until.
func (r *Registry) awaitFailover(ctx context.Context, risky node, until time.Time) (next string, settled bool) {
	for {
		cur, err := r.currentMaster(ctx)
		switch {
		case err != nil:
			// The client may be reconnecting to the new master: keep watching.
		case cur.id != risky.id:
			return cur.id, false
		case cur.replicasAt(risky.offset) >= r.cfg.WaitReplicas || r.withoutReplicas() == risky.id:
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

// node is what INFO says of a master: its run id, its replication offset and the offsets its
// replicas acknowledged (replicas acknowledge every second, and at once when a WAIT asks).
type node struct {
	id       string
	offset   int64
	replicas []int64
}

// replicasAt counts the replicas that have everything up to offset.
func (n node) replicasAt(offset int64) int {
	c := 0
	for _, o := range n.replicas {
		if o >= offset {
			c++
		}
	}
	return c
}

// nodeState reads INFO server and INFO replication (Redis before 7 takes one section per INFO) of
// the master c reaches. A node that is not a master any more answers with an error (the write it
// took is the one at risk).
func nodeState(ctx context.Context, c redis.Cmdable) (node, error) {
	var server, repl *redis.StringCmd
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		server = p.Info(ctx, "server")
		repl = p.Info(ctx, "replication")
		return nil
	}); err != nil {
		return node{}, err
	}
	n := node{id: infoField(server.Val(), "run_id")}
	if n.id == "" {
		return node{}, errors.New("INFO server has no run_id")
	}
	if role := infoField(repl.Val(), "role"); role != "master" {
		return node{}, errors.New("the node is a " + role + ", not a master")
	}
	n.offset, _ = strconv.ParseInt(infoField(repl.Val(), "master_repl_offset"), 10, 64)
	for _, line := range strings.Split(repl.Val(), "\n") {
		// slave0:ip=127.0.0.1,port=6380,state=online,offset=1234,lag=0
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(k, "slave") || !strings.Contains(v, "state=online") {
			continue
		}
		for _, kv := range strings.Split(v, ",") {
			if o, ok := strings.CutPrefix(kv, "offset="); ok {
				off, _ := strconv.ParseInt(o, 10, 64)
				n.replicas = append(n.replicas, off)
			}
		}
	}
	return n, nil
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

// currentMaster is nodeState of the master the client talks to now. It remembers that master: when
// it differs from the one seen before, the client has switched (a failover), and the new master is
// taken as one without replicas until a write is confirmed (its old master becomes its replica only
// ~10 s later), so writes to it do not wait for a failover window.
func (r *Registry) currentMaster(ctx context.Context) (node, error) {
	n, err := nodeState(ctx, r.rdb)
	if err != nil {
		return n, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lastMaster != "" && r.lastMaster != n.id && len(n.replicas) < r.cfg.WaitReplicas {
		r.noReplicas = n.id
	}
	r.lastMaster = n.id
	return n, nil
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
	n, err := r.currentMaster(ctx)
	return n.id, wrapName("master id", "", err)
}
