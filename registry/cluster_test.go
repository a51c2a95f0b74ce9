package registry

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/n8n-fn/n8n-fn/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestRealCluster runs the registry on a 3-master Redis Cluster of local redis-server processes
// (skipped with the reason when that cannot be started here).
func TestRealCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test skipped with -short: it starts three redis-server processes")
	}
	cl := redistest.StartCluster(t, 3)
	uc, err := NewClient("redis+cluster://"+cl.Addrs()[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = uc.Close() })
	client, ok := uc.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("redis+cluster:// gave a %T", uc)
	}
	r, err := New(client, Config{Prefix: "ct:", MaxDeliveries: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !r.cluster {
		t.Fatal("a ClusterClient must switch on slot grouping")
	}
	ctx := ctxT(t)

	// Our CRC16 agrees with the server.
	fns := []FunctionKey{fnKey("add"), fnKey("mul"), fnKey("div"), {Scope: "wf7", Name: "local"}, fnKey("sub"), fnKey("neg")}
	for _, fn := range fns {
		for _, key := range append(r.k.functionKeys(fn), r.ReplyKey("caller-"+fn.Name)) {
			want, err := client.ClusterKeySlot(ctx, key).Result()
			if err != nil || int(want) != KeySlot(key) {
				t.Fatalf("KeySlot(%q) = %d, CLUSTER KEYSLOT = %d (%v)", key, KeySlot(key), want, err)
			}
		}
	}
	nodes := map[string]bool{}
	for _, fn := range fns {
		n, err := client.MasterForKey(ctx, r.k.calls(fn))
		if err != nil {
			t.Fatal(err)
		}
		nodes[n.Options().Addr] = true
	}
	if len(nodes) < 2 {
		t.Fatalf("test functions all on one node (%v); pick other names", nodes)
	}

	for _, fn := range fns {
		if err := r.RegisterFunction(ctx, FunctionRecord{Key: fn, WorkflowID: "wf"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Heartbeat(ctx, "sc-1", fns); err != nil {
		t.Fatal(err)
	}
	if live, err := r.HasLiveConsumer(ctx, fns[3]); err != nil || !live {
		t.Fatalf("HasLiveConsumer = %v, %v", live, err)
	}
	sc, err := r.ListSidecars(ctx) // SCAN on every master
	if err != nil || len(sc) != 1 {
		t.Fatalf("ListSidecars = %v, %v", sc, err)
	}
	var ids []string
	for _, fn := range fns {
		c := newCall(r, fn, "caller", `{"x":1}`)
		ids = append(ids, c.ID)
		mustAdd(t, r, c)
	}
	ds, err := r.ReadCalls(ctx, "sc-1", fns, 10, 100*time.Millisecond)
	if err != nil || len(ds) != len(fns) {
		t.Fatalf("ReadCalls over %d slots = %d deliveries, %v", len(r.SlotGroups(fns)), len(ds), err)
	}
	for _, d := range ds[1:] {
		if err := r.KeepAlive(ctx, d.Function, "sc-1", []string{d.EntryID}); err != nil {
			t.Fatal(err)
		}
		if err := r.Complete(ctx, d, Reply{OK: true}); err != nil {
			t.Fatal(err)
		}
	}
	// The first one is abandoned: reclaimed once more than MaxDeliveries allows, so dead-lettered.
	time.Sleep(30 * time.Millisecond)
	if rc, err := r.Reclaim(ctx, ds[0].Function, "sc-2", 10*time.Millisecond, 10); err != nil || len(rc) != 0 {
		t.Fatalf("Reclaim = %v, %v", rc, err)
	}
	got, err := r.WaitReplies(ctx, r.ReplyKey("caller"), ids, time.Now().Add(2*time.Second))
	if err != nil || len(got) != len(fns) {
		t.Fatalf("WaitReplies = %d replies, %v", len(got), err)
	}
	if got[ds[0].Call.ID].ErrorKind != ErrorKindDeadLetter {
		t.Fatalf("abandoned call reply = %+v", got[ds[0].Call.ID])
	}
	dls, err := r.ListDeadLetters(ctx, ds[0].Function, 10)
	if err != nil || len(dls) != 1 {
		t.Fatalf("dead letters = %v, %v", dls, err)
	}
	// The budget counter (a slot of its own) released every answered and dead-lettered call.
	if used, _, err := r.BudgetUsage(ctx); err != nil || used != 0 {
		t.Fatalf("budget after every call answered or dead-lettered = %d, %v", used, err)
	}
	if _, err := r.ReplayDeadLetter(ctx, ds[0].Function, dls[0].ID); err != nil {
		t.Fatal(err)
	}
	used, _, err := r.BudgetUsage(ctx)
	if err != nil || used == 0 {
		t.Fatalf("a replayed dead letter is not counted: %d, %v", used, err)
	}
	if rec, err := r.ReconcileBudget(ctx); err != nil || rec != used {
		t.Fatalf("reconcile across slots = %d, %v; want the counted %d", rec, err, used)
	}
	for _, fn := range fns {
		if err := r.Trim(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	st, err := r.Status(ctx)
	if err != nil || len(st) != len(fns) {
		t.Fatalf("Status = %v, %v", st, err)
	}
	if err := r.RemoveFunction(ctx, fns[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddCall(ctx, newCall(r, fns[1], "caller", `{}`)); !errors.Is(err, ErrNoStream) {
		t.Fatalf("AddCall after removal = %v", err)
	}
}

// TestSentinel runs a call cycle through a Sentinel-discovered master (redis+sentinel:// URL).
func TestSentinel(t *testing.T) {
	srv := redistest.Start(t)
	sen := redistest.StartSentinel(t, srv)
	client, err := NewClient(sen.URL(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	r, err := New(client, Config{Prefix: srv.Prefix()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	fn := fnKey("via-sentinel")
	mustEnsure(t, r, fn)
	c := newCall(r, fn, "caller", `{}`)
	mustAdd(t, r, c)
	ds := mustRead(t, r, "s1", []FunctionKey{fn}, 1)
	if len(ds) != 1 {
		t.Fatalf("read %d", len(ds))
	}
	if err := r.Complete(ctx, ds[0], Reply{OK: true}); err != nil {
		t.Fatal(err)
	}
	if got, err := r.WaitReplies(ctx, c.ReplyKey, []string{c.ID}, time.Now().Add(time.Second)); err != nil || !got[c.ID].OK {
		t.Fatalf("WaitReplies via sentinel = %v, %v", got, err)
	}
	// The master the sentinel handed out is the server we started.
	if n, err := srv.Client().Exists(ctx, r.k.calls(fn)).Result(); err != nil || n != 1 {
		t.Fatalf("stream not on the monitored master: %d, %v", n, err)
	}
}

// TestWaitReplicas: with WaitReplicas a queued call and a reply are on the replica before AddCall and
// Complete return (Redis WAIT), so a failover to that replica cannot lose them.
func TestWaitReplicas(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.Start(t)
	if !master.CanRestart() || !replica.CanRestart() {
		t.Skip("SKIP: needs two redis-server processes of its own")
	}
	host, port, _ := strings.Cut(master.Addr(), ":")
	ctx := ctxT(t)
	if err := replica.Client().Do(ctx, "REPLICAOF", host, port).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = replica.Client().Do(context.Background(), "REPLICAOF", "NO", "ONE").Err() })
	waitReplicaLink(t, master)
	r, err := New(master.Client(), Config{Prefix: master.Prefix(), WaitReplicas: 1, WaitTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	waits := func() int64 { return commandCalls(t, master, "wait") }
	before := waits()
	fn := fnKey("replicated")
	mustEnsure(t, r, fn)
	c := newCall(r, fn, "caller", `{"a":1}`)
	id := mustAdd(t, r, c)
	if n, err := replica.Client().XLen(ctx, r.k.calls(fn)).Result(); err != nil || n != 1 {
		t.Fatalf("the call is not on the replica when AddCall returns: %d, %v", n, err)
	}
	ds := mustRead(t, r, "s1", []FunctionKey{fn}, 1)
	if err := r.Complete(ctx, ds[0], Reply{OK: true}); err != nil {
		t.Fatal(err)
	}
	if n, err := replica.Client().LLen(ctx, c.ReplyKey).Result(); err != nil || n != 1 {
		t.Fatalf("the reply of %s is not on the replica when Complete returns: %d, %v", id, n, err)
	}
	if got := waits() - before; got < 2 {
		t.Fatalf("WAIT ran %d times for a call and its reply, want 2", got)
	}
}

func waitReplicaLink(t *testing.T, master *redistest.Server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		info, err := master.Client().Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(info, "connected_slaves:1") && strings.Contains(info, "state=online") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the replica did not come online")
}

// commandCalls reads how often the server ran a command (INFO commandstats).
func commandCalls(t *testing.T, s *redistest.Server, cmd string) int64 {
	t.Helper()
	info, err := s.Client().Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
			n, _ := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
			return n
		}
	}
	return 0
}
