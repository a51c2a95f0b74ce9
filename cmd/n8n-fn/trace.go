package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/n8n-fn/n8n-fn/registry"
)

const traceUsage = `Usage: n8n-fn trace [--json] CALL_ID|EXECUTION_ID

Shows the whole tree of the call chain that a call or an n8n execution belongs to: the execution
at the top (workflow, worker), each call it made (function, params size, when it was queued and
dispatched, how often it was dispatched, outcome, durations), the function execution that served
it (workflow, execution id with a link into n8n's UI, worker), and that execution's own calls,
down to the leaves. Call ids are in the call's error messages, in n8n-fn deadletters list and in
the function execution's custom data (n8nfn_callId); execution ids are n8n's.

The sidecars keep what trace shows for N8N_FN_TRACE_TTL (default 1h); params and results are
never kept.

` + redisEnvHelp + `  N8N_FN_N8N_API_URL n8n's address, for the links (default http://127.0.0.1:5678)
`

func traceCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, traceUsage) }
	asJSON := fs.Bool("json", false, "print the tree as JSON")
	args, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if len(args) != 1 || strings.TrimSpace(args[0]) == "" {
		fs.Usage()
		return fmt.Errorf("%w: want one call id or execution id", errUsage)
	}
	id := strings.TrimSpace(args[0])
	reg, closeReg, err := registryFromEnv()
	if err != nil {
		return err
	}
	defer closeReg()
	tree, err := reg.Trace(ctx, id)
	if err != nil && !errors.Is(err, registry.ErrTraceCut) {
		return redisHint(err)
	}
	base := os.Getenv("N8N_FN_N8N_API_URL")
	if base == "" {
		base = "http://127.0.0.1:5678"
	}
	tree.SetLinks(base)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if e := enc.Encode(tree); e != nil {
			return e
		}
	} else {
		printTrace(stdout, tree, id)
	}
	if err != nil {
		fmt.Fprintf(stderr, "n8n-fn trace: %v; the tree above is cut\n", err)
	}
	return nil
}

// printTrace draws the tree with one line per execution and per call; mark is the id asked for.
func printTrace(w io.Writer, n *registry.TraceNode, mark string) {
	printExec(w, n, "", "", mark)
}

func printExec(w io.Writer, n *registry.TraceNode, first, rest, mark string) {
	line := "execution " + orDash(n.ID)
	if n.ID == "" {
		line = "(no execution: queued from outside n8n)"
	}
	if n.WorkflowName != "" || n.WorkflowID != "" {
		line += fmt.Sprintf("  workflow %q (%s)", n.WorkflowName, orDash(n.WorkflowID))
	}
	if n.Worker != "" {
		line += "  worker " + n.Worker
	}
	if n.ID != "" && n.ID == mark {
		line += "  <=="
	}
	fmt.Fprintln(w, first+line)
	if n.URL != "" {
		fmt.Fprintln(w, rest+"  "+n.URL)
	}
	for i, c := range n.CallTree {
		branch, next := "├─ ", "│  "
		if i == len(n.CallTree)-1 {
			branch, next = "└─ ", "   "
		}
		printCall(w, c, rest+branch, rest+next, mark)
	}
}

func printCall(w io.Writer, c *registry.TraceCallNode, first, rest, mark string) {
	if c.Function == "" {
		fmt.Fprintf(w, "%scall %s  (its record expired)\n", first, c.ID)
		return
	}
	outcome := c.Outcome
	if outcome == "" {
		outcome = "running"
	}
	line := fmt.Sprintf("call %s -> %s  %s  params %s", c.ID, c.Function, outcome, bytesText(c.ParamsBytes))
	if c.Attempt > 1 {
		line += fmt.Sprintf("  attempt %d", c.Attempt)
	}
	if c.CallerNode != "" {
		line += fmt.Sprintf("  from node %q", c.CallerNode)
	}
	if c.ID == mark {
		line += "  <=="
	}
	fmt.Fprintln(w, first+line)
	var times []string
	times = append(times, "queued "+c.Queued.UTC().Format("15:04:05.000"))
	switch {
	case c.Dispatches == 0:
		times = append(times, "not dispatched")
	default:
		d := fmt.Sprintf("dispatched after %s", ms(c.Dispatched.Sub(c.Queued)))
		if c.Dispatches > 1 {
			d += fmt.Sprintf(", %d times (re-run)", c.Dispatches)
		}
		if c.Dispatcher != "" {
			d += " by " + c.Dispatcher
		}
		times = append(times, d)
	}
	if !c.Finished.IsZero() {
		if !c.Dispatched.IsZero() {
			times = append(times, "ran "+ms(c.Finished.Sub(c.Dispatched)))
		}
		times = append(times, "total "+ms(c.Finished.Sub(c.Queued)))
	}
	fmt.Fprintln(w, rest+"  "+strings.Join(times, ", "))
	if c.Served != nil {
		printExec(w, c.Served, rest+"└─ ", rest+"   ", mark)
	}
}

func ms(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return d.Round(time.Millisecond).String()
}

func bytesText(n int) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f KiB", float64(n)/1024)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
