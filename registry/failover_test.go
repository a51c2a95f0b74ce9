package registry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/n8n-fn/n8n-fn/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestFailoverLosesNothing queues, reads and answers calls through a real Sentinel while
// SENTINEL FAILOVER promotes the replica, and then checks on the new master that every call
// AddCall returned is there (or answered) and every reply Complete returned is there. Without
// durable (WAIT on another connection, its answer ignored) writes taken by the old master between
// the promotion and the clients' switch were lost (seen: a call of the Sentinel replay).
func TestFailoverLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIP: a Sentinel failover takes several seconds")
	}
	master := redistest.Start(t)
	replica := redistest.Start(t)
	if !master.CanRestart() || !replica.CanRestart() {
		t.Skip("SKIP: needs two redis-server processes of its own")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	host, port, _ := strings.Cut(master.Addr(), ":")
	if err := replica.Client().Do(ctx, "REPLICAOF", host, port).Err(); err != nil {
		t.Fatal(err)
	}
	waitReplicaLink(t, master)
	newID := runID(t, replica)
	sen := redistest.StartSentinel(t, master)
	client, err := NewClient(sen.URL(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	r, err := New(client, Config{Prefix: master.Prefix(), WaitReplicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	fn := fnKey("failover")
	mustEnsure(t, r, fn)

	var (
		mu        sync.Mutex
		added     = map[string]Call{}   // call id -> call, for every AddCall that returned an entry
		entryOf   = map[string]string{} // call id -> entry id
		completed = map[string]bool{}   // call ids whose Complete returned nil
		afterSw   atomic.Int64          // calls queued after the client switched
		slowest   atomic.Int64          // the longest AddCall started after the switch, ns
		switched  atomic.Bool
		stop      = make(chan struct{})
		wg        sync.WaitGroup
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Millisecond):
				}
				c := newCall(r, fn, fmt.Sprintf("w%d-%d", w, i), `{}`)
				late, start := switched.Load(), time.Now()
				id, err := r.AddCall(ctx, c)
				if took := int64(time.Since(start)); late && took > slowest.Load() {
					slowest.Store(took)
				}
				if err != nil {
					continue // refused during the switch: the caller knows, nothing was promised
				}
				mu.Lock()
				added[c.ID], entryOf[c.ID] = c, id
				mu.Unlock()
				if switched.Load() {
					afterSw.Add(1)
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // a dispatcher: reads and answers
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			ds, err := r.ReadCalls(ctx, "d1", []FunctionKey{fn}, 16, 50*time.Millisecond)
			if err != nil {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			for _, d := range ds {
				if r.Complete(ctx, d, Reply{OK: true}) == nil {
					mu.Lock()
					completed[d.Call.ID] = true
					mu.Unlock()
				}
			}
		}
	}()

	time.Sleep(500 * time.Millisecond)
	sc := redis.NewSentinelClient(&redis.Options{Addr: sen.Addr})
	defer sc.Close()
	for {
		err := sc.Failover(ctx, sen.MasterName).Err()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("SENTINEL FAILOVER: %v", err)
		}
		time.Sleep(200 * time.Millisecond) // NOGOODSLAVE until Sentinel has seen the replica
	}
	mu.Lock()
	before := len(added)
	mu.Unlock()
	for {
		if n, err := nodeState(ctx, client); err == nil && n.id == newID {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the client never switched to the promoted replica")
		}
		time.Sleep(50 * time.Millisecond)
	}
	switched.Store(true)
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()

	nc := replica.Client() // the new master
	lost := 0
	for callID, c := range added {
		if completed[callID] {
			if n, err := nc.LLen(ctx, c.ReplyKey).Result(); err != nil || n == 0 {
				lost++
				t.Errorf("the reply of call %s (Complete returned nil) is not on the new master: %d, %v", callID, n, err)
			}
			continue
		}
		there, err := holdsCall(ctx, nc, r.k.calls(fn), entryOf[callID], callID)
		if err != nil || !there {
			lost++
			t.Errorf("call %s (AddCall returned entry %s) is not on the new master: %v", callID, entryOf[callID], err)
		}
	}
	t.Logf("%d calls queued (%d before the failover was started, %d after the client switched), %d answered, %d lost; slowest AddCall after the switch %s",
		len(added), before, afterSw.Load(), len(completed), lost, time.Duration(slowest.Load()).Round(time.Millisecond))
	// The new master has no replica for ~10 s: writes to it must not each wait for a failover window.
	if time.Duration(slowest.Load()) >= r.Config().FailoverWindow {
		t.Errorf("an AddCall on the new master took %s, a whole failover window", time.Duration(slowest.Load()))
	}
	if before == 0 || afterSw.Load() == 0 {
		t.Fatalf("the failover was not in the middle of the calls: %d queued before it, %d after the switch", before, afterSw.Load())
	}
}

// runID is the server's run_id (INFO server).
func runID(t *testing.T, s *redistest.Server) string {
	t.Helper()
	info, err := s.Client().Info(context.Background(), "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	id := infoField(info, "run_id")
	if id == "" {
		t.Fatal(errors.New("no run_id in INFO server"))
	}
	return id
}

// TestDeadReplicaCostsAShortWait: with WaitReplicas and the only replica dead, the first write
// waits one failover window (a failover may be under way) and the next ones do not wait;
// when the replica is back, writes are confirmed again.
func TestDeadReplicaCostsAShortWait(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.Start(t)
	if !master.CanRestart() || !replica.CanRestart() {
		t.Skip("SKIP: needs two redis-server processes of its own")
	}
	ctx := ctxT(t)
	host, port, _ := strings.Cut(master.Addr(), ":")
	if err := replica.Client().Do(ctx, "REPLICAOF", host, port).Err(); err != nil {
		t.Fatal(err)
	}
	waitReplicaLink(t, master)
	window := 300 * time.Millisecond
	r, err := New(master.Client(), Config{Prefix: master.Prefix(), WaitReplicas: 1, FailoverWindow: window})
	if err != nil {
		t.Fatal(err)
	}
	fn := fnKey("dead-replica")
	mustEnsure(t, r, fn)
	add := func() time.Duration {
		start := time.Now()
		mustAdd(t, r, newCall(r, fn, "caller", `{}`))
		return time.Since(start)
	}
	if d := add(); d > 150*time.Millisecond {
		t.Fatalf("a confirmed write took %s", d)
	}
	replica.Kill()
	if d := add(); d < window {
		t.Fatalf("the first write after the replica died took %s, want the failover window %s", d, window)
	}
	for i := 0; i < 5; i++ {
		if d := add(); d > 50*time.Millisecond {
			t.Fatalf("write %d to a master known without replicas took %s, want no wait", i, d)
		}
	}
	if r.withoutReplicas() == "" {
		t.Fatal("the master is not remembered as one without replicas")
	}
	replica.Resume()
	if err := replica.Client().Do(ctx, "REPLICAOF", host, port).Err(); err != nil {
		t.Fatal(err)
	}
	waitReplicaLink(t, master)
	// The first WAIT may time out while the resynchronised replica catches up with its acks.
	for deadline := time.Now().Add(5 * time.Second); r.withoutReplicas() != ""; {
		if time.Now().After(deadline) {
			t.Fatalf("after the replica is back, the master is still taken as one without replicas (%s)", r.withoutReplicas())
		}
		add()
	}
}

// TestStaleMasterAnswersAreReadAgain: sidecars switch to the new master one by one; one still on the
// old master must not take "never dispatched" or "no such entry" from it for a call another sidecar
// dispatched on the new master. Here the client is moved by hand: it dials wherever addr points and
// its connections to the old master are killed, like go-redis does on +switch-master.
func TestStaleMasterAnswersAreReadAgain(t *testing.T) {
	oldM := redistest.Start(t)
	newM := redistest.Start(t)
	if !oldM.CanRestart() || !newM.CanRestart() {
		t.Skip("SKIP: needs two redis-server processes of its own")
	}
	ctx := ctxT(t)
	host, port, _ := strings.Cut(oldM.Addr(), ":")
	if err := newM.Client().Do(ctx, "REPLICAOF", host, port).Err(); err != nil {
		t.Fatal(err)
	}
	waitReplicaLink(t, oldM)
	var addr atomic.Value
	addr.Store(oldM.Addr())
	moving := redis.NewClient(&redis.Options{Dialer: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr.Load().(string))
	}})
	t.Cleanup(func() { _ = moving.Close() })
	stale, err := New(moving, Config{Prefix: oldM.Prefix(), WaitReplicas: 1, FailoverWindow: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	current, err := New(newM.Client(), Config{Prefix: oldM.Prefix()}) // a sidecar already switched
	if err != nil {
		t.Fatal(err)
	}
	fn := fnKey("stale")
	mustEnsure(t, stale, fn)
	if _, err := stale.MasterID(ctx); err != nil { // the stale sidecar knows its master
		t.Fatal(err)
	}
	waitReplicaLink(t, oldM)
	// The promotion: the old master keeps answering, without its replica.
	if err := newM.Client().Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	c := newCall(current, fn, "caller", `{}`)
	entry := mustAdd(t, current, c)
	if _, err := current.ReadCalls(ctx, "d1", []FunctionKey{fn}, 1, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	n, err := current.NextDispatch(ctx, fn, c.ID, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	go func() { // the stale sidecar hears +switch-master a moment later
		time.Sleep(300 * time.Millisecond)
		addr.Store(newM.Addr())
		_ = oldM.Client().Do(context.Background(), "CLIENT", "KILL", "TYPE", "normal").Err()
	}()
	start := time.Now()
	if _, err := stale.LoadCall(ctx, fn, entry); err != nil {
		t.Fatalf("LoadCall of a call queued on the new master, from a sidecar still on the old one: %v", err)
	}
	if err := stale.ClaimCall(ctx, fn, c.ID, n, "exec-1", "sidecar-1", time.Minute); err != nil {
		t.Fatalf("ClaimCall of a call dispatched on the new master, from a sidecar still on the old one: %v", err)
	}
	took := time.Since(start)
	t.Logf("read again on the new master after %s", took.Round(time.Millisecond))
	if took >= stale.Config().FailoverWindow {
		t.Fatalf("the reads waited %s, the whole failover window, instead of following the switch", took)
	}
}
