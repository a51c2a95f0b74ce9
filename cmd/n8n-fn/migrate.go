package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/n8n-fn/n8n-fn/workflows"
)

// errUnconverted makes migrate exit 1 after writing what it could convert.
var errUnconverted = errors.New("some nodes could not be converted (see the report)")

const migrateUsage = `Usage: n8n-fn migrate [--global] [--out DIR | --stdout] [--json] FILE...

Converts workflows that use the n8n-nodes-function package (Function, Call Function, Return from
Function) into n8n-fn directives: Webhook + function node, call node (with an Edit Fields node for
its parameter values), return node. Node names, ids, positions and settings are kept. Migrate all
workflows that call each other in one run, so calls find their target's scope. See MIGRATION.md.

A FILE holds one workflow or an array of workflows (n8n export:workflow --all). The input files are
never changed: each result is written to DIR/NAME (--out) or next to the input as NAME.n8n-fn.json;
--stdout prints the single migrated workflow instead.

  --global   make every function global and call it by name (default: keep the origin's
             per-workflow scope; calls name the function's workflow id)
  --json     print the report as JSON

Exit status: 0 all converted, 1 some nodes left unconverted (files are still written), 2 bad usage.
`

func migrateCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, migrateUsage) }
	global := fs.Bool("global", false, "make every migrated function global")
	outDir := fs.String("out", "", "write migrated workflows into this directory")
	toStdout := fs.Bool("stdout", false, "print the migrated workflow (one workflow only)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("%w: no workflow files given", errUsage)
	}
	if *toStdout && *outDir != "" {
		return fmt.Errorf("%w: --out and --stdout exclude each other", errUsage)
	}

	// Every workflow of every file goes into one Migrate call (cross-workflow scopes).
	type source struct {
		path  string
		array bool
		count int
	}
	var sources []source
	var all [][]byte
	for _, path := range fs.Args() {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if !gjson.ValidBytes(b) {
			return fmt.Errorf("migrate: %s: not valid JSON", path)
		}
		v := gjson.ParseBytes(b)
		src := source{path: path}
		if v.IsArray() {
			src.array = true
			for _, w := range v.Array() {
				all = append(all, []byte(w.Raw))
				src.count++
			}
		} else {
			all = append(all, b)
			src.count = 1
		}
		sources = append(sources, src)
	}
	if *toStdout && len(all) != 1 {
		return fmt.Errorf("%w: --stdout takes exactly one workflow, got %d", errUsage, len(all))
	}
	ms, err := workflows.Migrate(all, workflows.MigrateOptions{Global: *global})
	if err != nil {
		return err
	}

	// Write results.
	report := stdout
	if *toStdout {
		report = stderr
		if _, err := stdout.Write(ms[0].Workflow); err != nil {
			return fmt.Errorf("migrate: write: %w", err)
		}
	} else {
		if *outDir != "" {
			if err := os.MkdirAll(*outDir, 0o755); err != nil {
				return fmt.Errorf("migrate: %w", err)
			}
		}
		i := 0
		for _, src := range sources {
			part := ms[i : i+src.count]
			i += src.count
			target := strings.TrimSuffix(src.path, filepath.Ext(src.path)) + ".n8n-fn.json"
			if *outDir != "" {
				target = filepath.Join(*outDir, filepath.Base(src.path))
			}
			if abs(target) == abs(src.path) {
				return fmt.Errorf("migrate: refusing to overwrite the input %s; choose another --out", src.path)
			}
			var body []byte
			if src.array {
				parts := make([][]byte, len(part))
				for j, m := range part {
					parts[j] = bytes.TrimSpace(m.Workflow)
				}
				var buf bytes.Buffer
				if err := json.Indent(&buf, []byte("["+string(bytes.Join(parts, []byte(",")))+"]"), "", "  "); err != nil {
					return fmt.Errorf("migrate: %s: %w", src.path, err)
				}
				body = append(buf.Bytes(), '\n')
			} else {
				body = part[0].Workflow
			}
			if err := os.WriteFile(target, body, 0o644); err != nil {
				return fmt.Errorf("migrate: %w", err)
			}
			if !*asJSON {
				fmt.Fprintf(report, "%s -> %s\n", src.path, target)
			}
		}
	}

	unconverted := 0
	reports := make([]workflows.MigrateReport, len(ms))
	for i, m := range ms {
		reports[i] = m.Report
		unconverted += len(m.Report.Unconverted)
	}
	if *asJSON {
		enc := json.NewEncoder(report)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reports); err != nil {
			return fmt.Errorf("migrate: write report: %w", err)
		}
	} else {
		for _, r := range reports {
			printMigrateReport(report, r)
		}
	}
	if unconverted > 0 {
		return fmt.Errorf("%d node(s): %w", unconverted, errUnconverted)
	}
	return nil
}

func printMigrateReport(w io.Writer, r workflows.MigrateReport) {
	fmt.Fprintf(w, "\nworkflow %q (%s)\n", r.WorkflowName, r.WorkflowID)
	if len(r.Converted)+len(r.Review)+len(r.Unconverted) == 0 {
		fmt.Fprintln(w, "  nothing to migrate")
		return
	}
	for _, n := range r.Converted {
		fmt.Fprintf(w, "  converted    %q: %s\n", n.Node, n.Message)
	}
	for _, n := range r.Review {
		fmt.Fprintf(w, "  review       %q: %s\n", n.Node, n.Message)
	}
	for _, n := range r.Unconverted {
		fmt.Fprintf(w, "  NOT CONVERTED %q: %s\n", n.Node, n.Message)
	}
}

func abs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}
