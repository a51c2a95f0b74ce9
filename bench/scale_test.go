package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestParseLevels(t *testing.T) {
	got, err := ParseLevels(" 1, 100,500 ")
	if err != nil || len(got) != 3 || got[0] != 1 || got[1] != 100 || got[2] != 500 {
		t.Fatalf("ParseLevels: %v %v", got, err)
	}
	for _, bad := range []string{"", ",", "0", "1,x", "-5"} {
		if _, err := ParseLevels(bad); err == nil || !strings.Contains(err.Error(), "--scale") {
			t.Errorf("ParseLevels(%q): want an error naming --scale, got %v", bad, err)
		}
	}
}

func TestParseClientList(t *testing.T) {
	const list = "id=17 addr=127.0.0.1:35392 laddr=127.0.0.1:6394 fd=22 name= age=30 idle=2 flags=N db=0 cmd=evalsha\n" +
		"id=18 addr=[::1]:40000 laddr=[::1]:6394 fd=23 name=x flags=b db=0 cmd=xreadgroup\n" +
		"garbage line\n"
	got := parseClientList(list)
	if len(got) != 2 || got[0].port != 35392 || got[0].blocked || got[1].port != 40000 || !got[1].blocked {
		t.Fatalf("parseClientList: %+v", got)
	}
}

func TestHexPort(t *testing.T) {
	if p := hexPort("0100007F:18EA"); p != 6378 {
		t.Errorf("hexPort = %d, want 6378", p)
	}
	if p := hexPort("nonsense"); p != 0 {
		t.Errorf("hexPort(nonsense) = %d", p)
	}
}

// TestOwnProcessFacts reads this test process's RSS and sockets from /proc: the same readers the
// scale benchmark uses for the sidecars.
func TestOwnProcessFacts(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	if rss := rssKB(os.Getpid()); rss <= 0 {
		t.Errorf("rssKB(self) = %d", rss)
	}
	if rssKB(-1) != 0 {
		t.Error("rssKB of no process must be 0")
	}
}

func TestScaleWorkflowsAreValid(t *testing.T) {
	r := &scaleRun{runID: "abc"}
	b, name, err := r.functionWorkflow(3)
	if err != nil || name != "bsabc-f3" || !bytes.Contains(b, []byte(`\"name\":\"bsabc-f3\"`)) {
		t.Fatalf("functionWorkflow: %v %q %s", err, name, b)
	}
	b, name, err = r.plainWorkflow(7)
	var w struct {
		Nodes []map[string]any `json:"nodes"`
	}
	if err != nil || name != "" || json.Unmarshal(b, &w) != nil || len(w.Nodes) != 3 || bytes.Contains(b, []byte("@n8n-fn")) {
		t.Fatalf("plainWorkflow: %v %q %s", err, name, b)
	}
}

func TestScaleTable(t *testing.T) {
	rep := ScaleReport{IdleS: 20, CPUs: 2, Levels: []ScaleLevel{
		{Functions: 1, Workflows: 2, Sidecars: []SidecarScale{{Name: "sidecar-main", RedisConns: 3, Blocked: 1}}, Call: Result{P50Ms: 100}},
		{Functions: 500, Workflows: 501, Sidecars: []SidecarScale{{Name: "sidecar-main", RedisConns: 4, Blocked: 1}}, Call: Result{P50Ms: 110}},
	}, P50Ratio: 1.1}
	var buf bytes.Buffer
	rep.Table(&buf)
	out := buf.String()
	if !strings.Contains(out, "sidecar-main") || !strings.Contains(out, "call p50 at 500 functions / at 1: 1.10") {
		t.Fatalf("table:\n%s", out)
	}
}

// TestSidecarScales: only sidecar-* pid files make rows, sorted by name; each row counts the
// Redis connections whose client port the sidecar holds, and the blocked ones among them.
func TestSidecarScales(t *testing.T) {
	pids := map[string]int{"sidecar-worker1": -2, "main": -1, "sidecar-main": -3, "worker1": -4}
	conns := []clientConn{{port: 1}, {port: 2, blocked: true}, {port: 3}, {port: 9, blocked: true}}
	ports := map[int]map[int]bool{-2: {1: true, 2: true}, -3: {3: true, 4: true}}
	got := sidecarScales(pids, conns, func(g string) float64 { return float64(len(g)) }, func(pid int) map[int]bool { return ports[pid] })
	want := []SidecarScale{
		{Name: "sidecar-main", IdleCPUPct: 12, RedisConns: 1},
		{Name: "sidecar-worker1", IdleCPUPct: 15, RedisConns: 2, Blocked: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sidecarScales = %+v, want %+v", got, want)
	}
	if got := sidecarScales(map[string]int{"main": 1}, conns, nil, nil); got != nil {
		t.Errorf("no sidecars: %+v", got)
	}
	for in, want := range map[string]int{"redis://h:6390/0": 6390, "redis+sentinel://h:26379/m": 26379, "redis://h": 0, "::": 0} {
		if got := redisPort(in); got != want {
			t.Errorf("redisPort(%q) = %d, want %d", in, got, want)
		}
	}
}
