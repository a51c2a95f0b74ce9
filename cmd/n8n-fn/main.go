// Command n8n-fn is the n8n-fn sidecar and its operator tools. Each subcommand lives in its own
// file; this file only dispatches.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set by the linker (-ldflags "-X main.version=..."); it is never written at run time.
var version = "dev"

// command is one subcommand: its name, a one-line summary for --help, and what it does.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// errUsage marks an error caused by wrong arguments: exit code 2 instead of 1.
var errUsage = errors.New("usage")

func commands() []command {
	return []command{
		{"run", "run the sidecar: n8n task runner, relay, function dispatcher", runCmd},
		{"lint", "check workflows that use n8n-fn directives (FILE... or --api)", lintCmd},
		{"snippet", "print paste-ready n8n JSON for a function, call or return node", snippetCmd},
		{"replay", "import the bundled test workflows into n8n, run their cases, report", replayCmd},
		{"migrate", "convert workflows from the n8n-nodes-function package to n8n-fn directives", migrateCmd},
		{"status", "show functions, streams, pending calls, consumers and dead letters", statusCmd},
		{"deadletters", "list, replay or purge dead-lettered calls", deadLettersCmd},
		{"trace", "show the tree of a call chain (CALL_ID or EXECUTION_ID): executions, calls, workers, times", traceCmd},
		{"bench", "benchmark the running stack (webhook, sub-workflow, n8n-fn call)", benchCmd},
		{"chaos", "kill and restart stack processes while calls run; count what each fault cost", chaosCmd},
		{"version", "print the version", versionCmd},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, errUsage):
			fmt.Fprintf(stderr, "n8n-fn %s: %v\n", c.name, err)
			return 2
		default:
			fmt.Fprintf(stderr, "n8n-fn %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "n8n-fn: unknown command %q (see n8n-fn --help)\n", args[0])
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "n8n-fn %s: callable functions for n8n queue mode\n\nUsage: n8n-fn COMMAND [flags]\n\nCommands:\n", version)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'n8n-fn COMMAND --help' for the flags and environment variables of a command.\n")
}

func versionCmd(_ context.Context, _ []string, stdout, _ io.Writer) error {
	fmt.Fprintf(stdout, "n8n-fn %s\n", version)
	return nil
}
