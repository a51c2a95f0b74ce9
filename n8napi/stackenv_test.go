package n8napi

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestLoadStackEnvExact pins LoadStackEnv over a table: every error word for word (the path
// replaced by ENV) and the fields of what it reads (quotes, export, spaces, comments, defaults).
func TestLoadStackEnvExact(t *testing.T) {
	const base = "N8N_BASE_URL=http://h:5678/\nN8N_API_KEY=k\n"
	for _, tc := range []struct {
		name, file string
		want       StackEnv // Vars and Path are checked apart
		err        string
	}{
		{"minimal", base, StackEnv{BaseURL: "http://h:5678", WebhookURL: "http://h:5678/webhook", APIKey: "k"}, ""},
		{"everything", "# comment\n\n  export N8N_BASE_URL = \"http://h\"  \nN8N_API_KEY='k=v'\nN8N_WEBHOOK_URL=http://w/\nREDIS_URL=redis://r:1\n" +
			"N8N_RUNNERS_AUTH_TOKEN=t\nN8N_FN_SECRET=s\nN8N_FN_BIN=/bin/fn\nN8N_STACK_LOG_DIR=/l\nN8N_STACK_RUNNER_KIND=sidecar\n" +
			"N8N_MAIN_BROKER_PORT=5679\nN8N_WORKER_BROKER_PORTS= 5680, 5681 \nEXTRA=\"x\nODD='\"'\n",
			StackEnv{BaseURL: "http://h", WebhookURL: "http://w/", APIKey: "k=v", RedisURL: "redis://r:1", RunnersAuthToken: "t", FnSecret: "s",
				FnBin: "/bin/fn", LogDir: "/l", RunnerKind: "sidecar", MainBrokerPort: 5679, WorkerBrokerPorts: []int{5680, 5681}}, ""},
		{"not key=value", base + "# x\nJUST A LINE\n", StackEnv{}, `load stack env ENV: line 4 is not KEY=VALUE: "JUST A LINE"`},
		{"empty key", " = v\n", StackEnv{}, `load stack env ENV: line 1 is not KEY=VALUE: "= v"`},
		{"export only", "export KEY\n", StackEnv{}, `load stack env ENV: line 1 is not KEY=VALUE: "KEY"`},
		{"missing both", "REDIS_URL=x\n", StackEnv{}, "load stack env ENV: missing N8N_BASE_URL, N8N_API_KEY (re-run scripts/stack.sh up)"},
		{"empty quoted key", "N8N_BASE_URL=http://h\nN8N_API_KEY=\"\"\n", StackEnv{}, "load stack env ENV: missing N8N_API_KEY (re-run scripts/stack.sh up)"},
		{"bad main port", base + "N8N_MAIN_BROKER_PORT=x\n", StackEnv{}, `load stack env ENV: N8N_MAIN_BROKER_PORT="x" is not a port: strconv.Atoi: parsing "x": invalid syntax`},
		{"bad worker ports", base + "N8N_WORKER_BROKER_PORTS=1,,2\n", StackEnv{}, `load stack env ENV: N8N_WORKER_BROKER_PORTS="1,,2": strconv.Atoi: parsing "": invalid syntax`},
		{"long line", base + "X=" + strings.Repeat("v", 70_000) + "\n", StackEnv{}, "load stack env ENV: bufio.Scanner: token too long"},
	} {
		p := filepath.Join(t.TempDir(), "stack.env")
		if err := os.WriteFile(p, []byte(tc.file), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := LoadStackEnv(p)
		if tc.err != "" {
			if err == nil || strings.ReplaceAll(err.Error(), p, "ENV") != tc.err {
				t.Errorf("%s: error %v\nwant %s", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got.Path != p || got.Vars["N8N_API_KEY"] != tc.want.APIKey {
			t.Errorf("%s: Path %q Vars %v", tc.name, got.Path, got.Vars)
		}
		if tc.name == "everything" && (got.Vars["EXTRA"] != `"x` || got.Vars["ODD"] != `"` || len(got.Vars) != 13) {
			t.Errorf("everything: Vars = %q", got.Vars)
		}
		got.Vars, got.Path = nil, ""
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
	if _, err := LoadStackEnv(t.TempDir()); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("a directory: %v", err)
	}
}
