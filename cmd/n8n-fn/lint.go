package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/n8n-fn/n8n-fn/n8napi"
	"github.com/n8n-fn/n8n-fn/workflows"
)

// errFindings makes lint exit 1 after it printed its findings.
var errFindings = errors.New("lint found errors")

const lintUsage = `Usage: n8n-fn lint [--json] FILE...
       n8n-fn lint [--json] --api [--published]

Checks workflows that use n8n-fn directives: directive headers, the Webhook in front of every
function node, duplicate global function names (across all the workflows checked), return nodes
with no function upstream, params schemas, Code node language and mode.

A FILE holds one workflow (n8n editor "Download"), an array of workflows (n8n export:workflow
--all) or an API page ({"data":[...]}). --api lists the workflows through n8n's public API.

Environment (for --api):
  N8N_FN_N8N_API_URL   n8n base URL (default http://127.0.0.1:5678)
  N8N_FN_N8N_API_KEY   n8n API key (required)

Exit status: 0 no errors (warnings allowed), 1 errors found, 2 bad usage.
`

func lintCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, lintUsage) }
	asJSON := fs.Bool("json", false, "print findings as JSON")
	useAPI := fs.Bool("api", false, "lint the workflows of the n8n instance (N8N_FN_N8N_API_URL, N8N_FN_N8N_API_KEY)")
	publishedOnly := fs.Bool("published", false, "with --api: only published (active) workflows")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *useAPI == (fs.NArg() > 0) {
		fs.Usage()
		return fmt.Errorf("%w: give workflow files or --api (not both)", errUsage)
	}

	var findings []workflows.Finding
	var wfs []*workflows.Workflow
	if *useAPI {
		key := os.Getenv("N8N_FN_N8N_API_KEY")
		if key == "" {
			return fmt.Errorf("%w: --api needs N8N_FN_N8N_API_KEY (an n8n API key: Settings > n8n API)", errUsage)
		}
		base := lintEnvOr("N8N_FN_N8N_API_URL", "http://127.0.0.1:5678")
		list, err := n8napi.New(base, key).ListWorkflows(ctx, *publishedOnly)
		if err != nil {
			return fmt.Errorf("lint: list workflows from %s: %w", base, err)
		}
		for _, w := range list {
			wf, err := workflows.ParseWorkflow(w.Raw)
			if err != nil {
				findings = append(findings, workflows.Finding{WorkflowID: w.ID, WorkflowName: w.Name, Severity: workflows.SeverityError, Message: err.Error()})
				continue
			}
			wfs = append(wfs, wf)
		}
	} else {
		for _, path := range fs.Args() {
			b, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("lint: %w", err)
			}
			parsed, err := workflows.ParseWorkflows(b)
			if err != nil {
				findings = append(findings, workflows.Finding{Severity: workflows.SeverityError, Message: fmt.Sprintf("%s: %v", path, err),
					Hint: "pass a workflow exported from n8n (Download) or n8n's API"})
				continue
			}
			wfs = append(wfs, parsed...)
		}
	}
	findings = append(findings, workflows.LintWorkflows(wfs)...)

	if *asJSON {
		out := struct {
			Workflows int                 `json:"workflows"`
			Errors    int                 `json:"errors"`
			Warnings  int                 `json:"warnings"`
			Findings  []workflows.Finding `json:"findings"`
		}{Workflows: len(wfs), Findings: findings}
		if out.Findings == nil {
			out.Findings = []workflows.Finding{}
		}
		out.Errors, out.Warnings = countFindings(findings)
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return fmt.Errorf("lint: write output: %w", err)
		}
	} else {
		for _, f := range findings {
			fmt.Fprintln(stdout, f.String())
		}
		e, w := countFindings(findings)
		fmt.Fprintf(stdout, "%d workflow(s) checked: %d error(s), %d warning(s)\n", len(wfs), e, w)
	}
	if workflows.HasErrors(findings) {
		return errFindings
	}
	return nil
}

func countFindings(fs []workflows.Finding) (errs, warns int) {
	for _, f := range fs {
		if f.Severity == workflows.SeverityError {
			errs++
		} else {
			warns++
		}
	}
	return errs, warns
}

func lintEnvOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
