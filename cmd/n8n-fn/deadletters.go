package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/n8n-fn/n8n-fn/registry"
)

const deadLettersUsage = `Usage: n8n-fn deadletters list [--json] [--count N] FUNCTION
       n8n-fn deadletters replay FUNCTION ID
       n8n-fn deadletters purge FUNCTION ID...
       n8n-fn deadletters purge --all FUNCTION

FUNCTION is SCOPE/NAME: global/add, or <workflowId>/add for a workflow-local function.
A call is dead-lettered after too many deliveries without a result (its caller got an error).
replay queues it again (deadline: 5 minutes from now) and removes the dead letter; purge deletes.

` + redisEnvHelp

func deadLettersCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("deadletters", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, deadLettersUsage) }
	asJSON := fs.Bool("json", false, "list: print JSON")
	count := fs.Int64("count", 100, "list: at most this many, oldest first")
	all := fs.Bool("all", false, "purge: every dead letter of FUNCTION")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if len(pos) < 2 {
		fs.Usage()
		return fmt.Errorf("%w: need an action (list, replay, purge) and a FUNCTION", errUsage)
	}
	action, ids := pos[0], pos[2:]
	fn, err := registry.ParseFunctionKey(pos[1])
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if err := checkDeadLetterArgs(fs, action, fn, ids, *all); err != nil {
		return err
	}
	reg, closeReg, err := registryFromEnv()
	if err != nil {
		return err
	}
	defer closeReg()
	switch action {
	case "list":
		return listDeadLetters(ctx, reg, stdout, fn, *count, *asJSON)
	case "replay":
		id, err := reg.ReplayDeadLetter(ctx, fn, ids[0])
		if err != nil {
			return redisHint(err)
		}
		fmt.Fprintf(stdout, "replayed dead letter %s of %s as call entry %s\n", ids[0], fn, id)
	case "purge":
		n, err := reg.PurgeDeadLetters(ctx, fn, ids...)
		if err != nil {
			return redisHint(err)
		}
		fmt.Fprintf(stdout, "purged %d dead letter(s) of %s\n", n, fn)
	}
	return nil
}

// checkDeadLetterArgs refuses an action with the wrong IDs (or --all) before Redis is asked; the
// usage is printed where the action itself is in question.
func checkDeadLetterArgs(fs *flag.FlagSet, action string, fn registry.FunctionKey, ids []string, all bool) error {
	switch {
	case action == "list" && len(ids) > 0, action == "replay" && len(ids) != 1:
		fs.Usage()
		return fmt.Errorf("%w: %s takes %s", errUsage, action, map[string]string{"list": "only FUNCTION", "replay": "FUNCTION and one ID"}[action])
	case action == "purge" && len(ids) == 0 && !all:
		return fmt.Errorf("%w: purge needs dead letter IDs, or --all to delete every dead letter of %s", errUsage, fn)
	case action == "purge" && len(ids) > 0 && all:
		return fmt.Errorf("%w: give IDs or --all, not both", errUsage)
	case action != "list" && action != "replay" && action != "purge":
		fs.Usage()
		return fmt.Errorf("%w: unknown action %q (want list, replay or purge)", errUsage, action)
	}
	return nil
}

// listDeadLetters prints at most count dead letters of fn, oldest first: a table, or JSON.
func listDeadLetters(ctx context.Context, reg *registry.Registry, stdout io.Writer, fn registry.FunctionKey, count int64, asJSON bool) error {
	dls, err := reg.ListDeadLetters(ctx, fn, count)
	if err != nil {
		return redisHint(err)
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(dls)
	}
	printDeadLetters(stdout, fn, dls)
	return nil
}

func printDeadLetters(w io.Writer, fn registry.FunctionKey, dls []registry.DeadLetter) {
	if len(dls) == 0 {
		fmt.Fprintf(w, "no dead letters for %s\n", fn)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAT\tCALL\tCALLER\tDELIVERIES\tREASON")
	for _, d := range dls {
		call := d.Call.ID
		if d.Raw != "" {
			call = "(undecodable)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", d.ID, d.At.Format(time.RFC3339), call, d.Call.Caller, d.Deliveries, d.Reason)
	}
	_ = tw.Flush()
}

// parseInterspersed parses flags placed before, between or after positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
