package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/n8n-fn/n8n-fn/registry"
)

const redisEnvHelp = `Environment:
  N8N_FN_REDIS_URL  Redis URL (default redis://127.0.0.1:6379/0; redis+cluster://host:port?addr=...
                    for Cluster, redis+sentinel://host:port?master_name=NAME for Sentinel)
  N8N_FN_PREFIX     key prefix (default n8nfn:)
`

const statusUsage = `Usage: n8n-fn status [--json]

Shows every function known to Redis: registration, stream length, pending calls, undelivered
calls (lag), the age of the oldest pending call, consumers with their pending count and idle
time, live sidecars and dead letters. Also lists live sidecars and how full the Redis call budget
is (N8N_FN_REDIS_BUDGET_BYTES: the bytes unanswered calls hold, against the budget).

` + redisEnvHelp

func statusCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, statusUsage) }
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	reg, closeReg, err := registryFromEnv()
	if err != nil {
		return err
	}
	defer closeReg()
	st, err := reg.Status(ctx)
	if err != nil {
		return redisHint(err)
	}
	sidecars, err := reg.ListSidecars(ctx)
	if err != nil {
		return redisHint(err)
	}
	var b budgetStatus
	if b.UsedBytes, b.LimitBytes, err = reg.BudgetUsage(ctx); err != nil {
		return redisHint(err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Functions []registry.FunctionStatus `json:"functions"`
			Sidecars  []registry.SidecarInfo    `json:"sidecars"`
			Budget    budgetStatus              `json:"budget"`
		}{st, sidecars, b})
	}
	printStatus(stdout, st, sidecars, b)
	return nil
}

// budgetStatus is how full the Redis call budget is: what unanswered calls hold against
// N8N_FN_REDIS_BUDGET_BYTES (as this command reads it; every sidecar should have the same).
type budgetStatus struct {
	UsedBytes  int64 `json:"usedBytes"`
	LimitBytes int64 `json:"limitBytes"`
}

func printStatus(w io.Writer, st []registry.FunctionStatus, sidecars []registry.SidecarInfo, b budgetStatus) {
	if len(st) == 0 {
		fmt.Fprintln(w, "no functions registered (is a sidecar running with the same N8N_FN_PREFIX?)")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	var ambiguous []string
	if len(st) > 0 {
		fmt.Fprintln(tw, "FUNCTION\tREGISTERED\tLENGTH\tPENDING\tLAG\tOLDEST PENDING\tDEAD\tLIVE SIDECARS")
	}
	for _, s := range st {
		lag := "-"
		if s.Lag >= 0 {
			lag = fmt.Sprint(s.Lag)
		}
		oldest := "-"
		if s.OldestPendingID != "" {
			oldest = s.OldestPendingAge.Round(time.Millisecond).String()
		}
		reg := "no"
		if s.Registered {
			reg = "yes"
		}
		live := "-"
		if len(s.LiveSidecars) > 0 {
			live = strings.Join(s.LiveSidecars, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%d\t%s\n", s.Function, reg, s.Length, s.Pending, lag, oldest, s.DeadLetters, live)
		for _, c := range s.Consumers {
			fmt.Fprintf(tw, "  consumer %s\t\t\t%d\t\tidle %s\t\t\n", c.Name, c.Pending, c.Idle.Round(time.Millisecond))
		}
		if s.Record != nil && len(s.Record.Conflicts) > 0 {
			ambiguous = append(ambiguous, fmt.Sprintf("%s: defined by %s", s.Function, strings.Join(s.Record.Conflicts, ", ")))
		}
	}
	_ = tw.Flush()
	if len(ambiguous) > 0 {
		fmt.Fprintf(w, "\nAMBIGUOUS: calls to these functions fail until all but one definition are renamed, made workflow-scoped or unpublished:\n")
		for _, a := range ambiguous {
			fmt.Fprintf(w, "  %s\n", a)
		}
	}
	fmt.Fprintf(w, "\n%d live sidecar(s)\n", len(sidecars))
	for _, s := range sidecars {
		names := make([]string, len(s.Serves))
		for i, f := range s.Serves {
			names[i] = f.String()
		}
		fmt.Fprintf(w, "  %s  last heartbeat %s  serves %s\n", s.ID, s.At.Format(time.RFC3339), strings.Join(names, ", "))
	}
	pct := 0.0
	if b.LimitBytes > 0 {
		pct = 100 * float64(b.UsedBytes) / float64(b.LimitBytes)
	}
	fmt.Fprintf(w, "\nRedis call budget: unanswered calls hold %d of %d bytes (%.1f%% full; N8N_FN_REDIS_BUDGET_BYTES)\n",
		b.UsedBytes, b.LimitBytes, pct)
}

// registryFromEnv opens the registry the sidecar uses (N8N_FN_REDIS_URL, N8N_FN_PREFIX).
func registryFromEnv() (*registry.Registry, func(), error) {
	url := os.Getenv("N8N_FN_REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	client, err := registry.NewClient(url, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: N8N_FN_REDIS_URL: %v", errUsage, err)
	}
	cfg := registry.Config{Prefix: os.Getenv("N8N_FN_PREFIX")}
	if v := os.Getenv("N8N_FN_REDIS_BUDGET_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			_ = client.Close()
			return nil, nil, fmt.Errorf("%w: N8N_FN_REDIS_BUDGET_BYTES=%q: want a whole number of bytes, at least 1", errUsage, v)
		}
		cfg.BudgetBytes = n
	}
	reg, err := registry.New(client, cfg)
	if err != nil {
		_ = client.Close()
		return nil, nil, fmt.Errorf("%w: N8N_FN_PREFIX: %v", errUsage, err)
	}
	return reg, func() { _ = client.Close() }, nil
}

// redisHint adds what to check when Redis cannot be reached (the URL is not printed: it may hold a password).
func redisHint(err error) error {
	if errors.Is(err, registry.ErrUnavailable) {
		return fmt.Errorf("%w (is Redis running, and does N8N_FN_REDIS_URL point at it?)", err)
	}
	return err
}
