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
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/n8n-fn/n8n-fn/n8napi"
	"github.com/n8n-fn/n8n-fn/workflows"
)

// errUnconverted makes migrate exit 1 after writing what it could convert.
var errUnconverted = errors.New("some nodes could not be converted (see the report)")

const migrateUsage = `Usage: n8n-fn migrate [options] FILE... [-o OUT.json | --out DIR | --stdout]
       n8n-fn migrate --api --backup DIR [--dry-run] [--publish] [options]

Converts workflows that use the n8n-nodes-function package (Function, Call Function, Return from
Function) into n8n-fn directives: Webhook + function node, call node (with an Edit Fields node for
its parameter values), return node, reproducing what the given origin version did with the items.
Node names, ids, positions and settings are kept. Migrate all workflows that call each other in one
run, so calls find their targets. See MIGRATION.md.

A FILE holds one workflow or an array of workflows (n8n export:workflow --all). The input files are
never changed: -o writes the result to OUT.json (one workflow, or an array when the inputs hold
several), --out to DIR/NAME per input file, --stdout prints a single workflow; by default each
result goes next to its input as NAME.n8n-fn.json.

--api converts the workflows of the n8n instance in place, keeping their ids: every workflow is
first written to DIR/<id>.json (a file that exists already is an error, so no backup is ever
overwritten; restore with n8n import:workflow --separate --input=DIR), then each converted one is
updated through n8n's public API (N8N_FN_N8N_API_URL, default http://127.0.0.1:5678, and
N8N_FN_N8N_API_KEY), the workflows that define functions first. n8n 2.41 puts the update of a
published workflow live at once; --publish also publishes each updated workflow that was published
(for n8n versions that keep an update as a draft). --dry-run writes the backup and the report and
changes nothing.

Options:
  --origin VERSION  the n8n-nodes-function version the workflows ran on (0.1.0 .. 0.1.12, 0.2.0,
                    0.2.1); it decides what a call does with the result when Store Response is
                    off (merged in 0.1.2-0.1.12, dropped otherwise), whether defaults apply, and
                    what reaches the function. Default: detected from the parameters, 0.2.x when
                    nothing tells (the report says which)
  --typed           declare the function params with their origin types (checked and converted by
                    n8n-fn); default "any", unchecked, as in the origin
  --global          make every function global and call it by name (default: keep the origin's
                    per-workflow scope; calls name the function's workflow id)
  --id-map FILE     a JSON object {"<old workflow id>": "<new id>"}: calls to workflow-scoped
                    functions of an old id name the new one (workflows imported as new ones get
                    new ids). Also rewrites already converted workflows
  --json            print the report as JSON

Exit status: 0 all converted, 1 some nodes left unconverted (files are still written), 2 bad usage.
`

// migrateArgs are migrate's flags and files.
type migrateArgs struct {
	global, toStdout, asJSON, typed, useAPI, dryRun, publish bool
	outDir, outFile, origin, idMapPath, backup               string
	files                                                    []string
}

// migrateSource is one input file: where its workflows sit among all converted ones.
type migrateSource struct {
	path  string
	array bool
	count int
}

func migrateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	a, err := parseMigrateArgs(args, stderr)
	if err != nil || a == nil {
		return err
	}
	opts, err := a.options()
	if err != nil {
		return err
	}
	if a.useAPI {
		return migrateAPI(ctx, opts, a.backup, a.dryRun, a.publish, a.asJSON, stdout)
	}
	// Every workflow of every file goes into one Migrate call (cross-workflow scopes).
	sources, all, err := readMigrateSources(a.files)
	if err != nil {
		return err
	}
	if a.toStdout && len(all) != 1 {
		return fmt.Errorf("%w: --stdout takes exactly one workflow, got %d", errUsage, len(all))
	}
	ms, err := workflows.Migrate(all, opts)
	if err != nil {
		return err
	}
	report := stdout
	switch {
	case a.toStdout:
		report = stderr
		if _, err := stdout.Write(ms[0].Workflow); err != nil {
			return fmt.Errorf("migrate: write: %w", err)
		}
	case a.outFile != "":
		err = a.writeOneFile(sources, ms, report)
	default:
		err = a.writeBesideOrInDir(sources, ms, report)
	}
	if err != nil {
		return err
	}
	return writeMigrateReport(report, ms, a.asJSON)
}

// parseMigrateArgs reads the flags (before or after the files) and checks they fit together; nil
// and no error after --help.
func parseMigrateArgs(args []string, stderr io.Writer) (*migrateArgs, error) {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, migrateUsage) }
	a := &migrateArgs{}
	fs.BoolVar(&a.global, "global", false, "make every migrated function global")
	fs.StringVar(&a.outDir, "out", "", "write migrated workflows into this directory")
	fs.StringVar(&a.outFile, "o", "", "write the migrated workflow(s) to this file")
	fs.BoolVar(&a.toStdout, "stdout", false, "print the migrated workflow (one workflow only)")
	fs.BoolVar(&a.asJSON, "json", false, "print the report as JSON")
	fs.StringVar(&a.origin, "origin", "", "origin package version the workflows ran on")
	fs.BoolVar(&a.typed, "typed", false, "declare params with their origin types")
	fs.StringVar(&a.idMapPath, "id-map", "", "JSON file mapping old workflow ids to new ones")
	fs.BoolVar(&a.useAPI, "api", false, "convert the workflows of the n8n instance in place")
	fs.StringVar(&a.backup, "backup", "", "with --api: directory for the backup of every workflow")
	fs.BoolVar(&a.dryRun, "dry-run", false, "with --api: back up and report, change nothing")
	fs.BoolVar(&a.publish, "publish", false, "with --api: publish updated workflows that were published")
	// Flags may come after the files too (n8n-fn migrate IN.json -o OUT.json).
	files, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	a.files = files
	outputs := 0
	for _, set := range []bool{a.toStdout, a.outDir != "", a.outFile != ""} {
		if set {
			outputs++
		}
	}
	switch {
	case outputs > 1:
		return nil, fmt.Errorf("%w: -o, --out and --stdout exclude each other", errUsage)
	case a.useAPI && (len(files) > 0 || outputs > 0 || a.idMapPath != ""):
		return nil, fmt.Errorf("%w: --api converts in place: no files, -o, --out, --stdout or --id-map with it", errUsage)
	case a.useAPI && a.backup == "":
		return nil, fmt.Errorf("%w: --api needs --backup DIR (every workflow is saved there before anything changes)", errUsage)
	case !a.useAPI && (a.backup != "" || a.dryRun || a.publish):
		return nil, fmt.Errorf("%w: --backup, --dry-run and --publish only go with --api", errUsage)
	case !a.useAPI && len(files) == 0:
		fs.Usage()
		return nil, fmt.Errorf("%w: no workflow files given", errUsage)
	}
	return a, nil
}

// options are the conversion options the flags ask for (the --id-map file read).
func (a *migrateArgs) options() (workflows.MigrateOptions, error) {
	opts := workflows.MigrateOptions{Global: a.global, Origin: a.origin, Typed: a.typed}
	if a.origin != "" {
		if _, err := workflows.ParseOriginVersion(a.origin); err != nil {
			return opts, fmt.Errorf("%w: --origin: %v", errUsage, err)
		}
	}
	if a.idMapPath != "" {
		b, err := os.ReadFile(a.idMapPath)
		if err != nil {
			return opts, fmt.Errorf("migrate: %w", err)
		}
		if opts.IDMap, err = workflows.ParseIDMap(b); err != nil {
			return opts, fmt.Errorf("migrate: %s: %w", a.idMapPath, err)
		}
	}
	return opts, nil
}

// readMigrateSources reads every file: one workflow, or an array of them.
func readMigrateSources(files []string) ([]migrateSource, [][]byte, error) {
	var sources []migrateSource
	var all [][]byte
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, fmt.Errorf("migrate: %w", err)
		}
		if !gjson.ValidBytes(b) {
			return nil, nil, fmt.Errorf("migrate: %s: not valid JSON", path)
		}
		v := gjson.ParseBytes(b)
		src := migrateSource{path: path}
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
	return sources, all, nil
}

// writeOneFile writes every converted workflow to -o (an array when there are several, or when the
// one input was an array).
func (a *migrateArgs) writeOneFile(sources []migrateSource, ms []workflows.Migration, report io.Writer) error {
	for _, src := range sources {
		if abs(a.outFile) == abs(src.path) {
			return fmt.Errorf("migrate: refusing to overwrite the input %s; choose another -o", src.path)
		}
	}
	body := ms[0].Workflow
	if len(ms) > 1 || (len(sources) == 1 && sources[0].array) {
		var err error
		if body, err = workflowArray(ms); err != nil {
			return fmt.Errorf("migrate: %s: %w", a.outFile, err)
		}
	}
	if err := os.WriteFile(a.outFile, body, 0o644); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if !a.asJSON {
		fmt.Fprintf(report, "%s -> %s\n", strings.Join(a.files, ", "), a.outFile)
	}
	return nil
}

// writeBesideOrInDir writes each input's conversion next to it (X.n8n-fn.json) or into --out.
func (a *migrateArgs) writeBesideOrInDir(sources []migrateSource, ms []workflows.Migration, report io.Writer) error {
	if a.outDir != "" {
		if err := os.MkdirAll(a.outDir, 0o755); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	i := 0
	for _, src := range sources {
		part := ms[i : i+src.count]
		i += src.count
		target := strings.TrimSuffix(src.path, filepath.Ext(src.path)) + ".n8n-fn.json"
		if a.outDir != "" {
			target = filepath.Join(a.outDir, filepath.Base(src.path))
		}
		if abs(target) == abs(src.path) {
			return fmt.Errorf("migrate: refusing to overwrite the input %s; choose another --out", src.path)
		}
		body := part[0].Workflow
		if src.array {
			var err error
			if body, err = workflowArray(part); err != nil {
				return fmt.Errorf("migrate: %s: %w", src.path, err)
			}
		}
		if err := os.WriteFile(target, body, 0o644); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if !a.asJSON {
			fmt.Fprintf(report, "%s -> %s\n", src.path, target)
		}
	}
	return nil
}

// workflowArray writes migrated workflows as one indented JSON array.
func workflowArray(ms []workflows.Migration) ([]byte, error) {
	parts := make([][]byte, len(ms))
	for j, m := range ms {
		parts[j] = bytes.TrimSpace(m.Workflow)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, []byte("["+string(bytes.Join(parts, []byte(",")))+"]"), "", "  "); err != nil {
		return nil, err
	}
	return append(buf.Bytes(), '\n'), nil
}

func writeMigrateReport(w io.Writer, ms []workflows.Migration, asJSON bool) error {
	unconverted := 0
	reports := make([]workflows.MigrateReport, len(ms))
	for i, m := range ms {
		reports[i] = m.Report
		unconverted += len(m.Report.Unconverted)
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reports); err != nil {
			return fmt.Errorf("migrate: write report: %w", err)
		}
	} else {
		for _, r := range reports {
			printMigrateReport(w, r)
		}
	}
	if unconverted > 0 {
		return fmt.Errorf("%d node(s): %w", unconverted, errUnconverted)
	}
	return nil
}

func definesFunction(wf []byte) bool {
	w, err := workflows.ParseWorkflow(wf)
	if err != nil {
		return false
	}
	for _, n := range w.Nodes {
		if d, err := n.Directive(); err == nil {
			if _, ok := d.(*workflows.FunctionDirective); ok {
				return true
			}
		}
	}
	return false
}

// migrateAPI converts the instance's workflows in place: backup first, then one update per
// converted workflow (same id, so references between workflows stay right).
func migrateAPI(ctx context.Context, opts workflows.MigrateOptions, backupDir string, dryRun, publish, asJSON bool, stdout io.Writer) error {
	key := os.Getenv("N8N_FN_N8N_API_KEY")
	if key == "" {
		return fmt.Errorf("%w: --api needs N8N_FN_N8N_API_KEY (an n8n API key: Settings > n8n API)", errUsage)
	}
	base := lintEnvOr("N8N_FN_N8N_API_URL", "http://127.0.0.1:5678")
	client := n8napi.New(base, key)
	list, err := client.ListWorkflows(ctx, false)
	if err != nil {
		return fmt.Errorf("migrate: list workflows from %s: %w", base, err)
	}
	if err := os.MkdirAll(backupDir, 0o755); err != nil {
		return fmt.Errorf("migrate: backup: %w", err)
	}
	all := make([][]byte, len(list))
	for i, w := range list {
		var buf bytes.Buffer
		if err := json.Indent(&buf, w.Raw, "", "  "); err != nil {
			return fmt.Errorf("migrate: workflow %s from the API: %w", w.ID, err)
		}
		buf.WriteByte('\n')
		path := filepath.Join(backupDir, w.ID+".json")
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("migrate: backup (nothing was changed; use an empty --backup directory): %w", err)
		}
		_, werr := f.Write(buf.Bytes())
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return fmt.Errorf("migrate: backup %s (nothing was changed): %w", path, werr)
		}
		all[i] = w.Raw
	}
	fmt.Fprintf(stdout, "backed up %d workflow(s) to %s\n", len(list), backupDir)
	ms, err := workflows.Migrate(all, opts)
	if err != nil {
		return err
	}
	// Workflows that define functions go first: n8n 2.41 puts the update of a published workflow
	// live at once, so a converted caller should find its converted function already served.
	var order []int
	for pass := 0; pass < 2; pass++ {
		for i, m := range ms {
			if m.Changed && definesFunction(m.Workflow) == (pass == 0) {
				order = append(order, i)
			}
		}
	}
	for _, i := range order {
		m, w := ms[i], list[i]
		if dryRun {
			fmt.Fprintf(stdout, "would update workflow %s (%s)\n", w.ID, w.Name)
			continue
		}
		if err := client.UpdateWorkflow(ctx, w.ID, m.Workflow); err != nil {
			return fmt.Errorf("migrate: workflow %s (%s) (the ones before it are updated; the backup is in %s): %w", w.ID, w.Name, backupDir, err)
		}
		fmt.Fprintf(stdout, "updated workflow %s (%s)\n", w.ID, w.Name)
		if publish && w.Active {
			if err := client.PublishWorkflow(ctx, w.ID); err != nil {
				return fmt.Errorf("migrate: publish workflow %s (%s): %w", w.ID, w.Name, err)
			}
			fmt.Fprintf(stdout, "published workflow %s (%s)\n", w.ID, w.Name)
		}
	}
	return writeMigrateReport(stdout, ms, asJSON)
}

func printMigrateReport(w io.Writer, r workflows.MigrateReport) {
	fmt.Fprintf(w, "\nworkflow %q (%s)\n", r.WorkflowName, r.WorkflowID)
	if len(r.Converted)+len(r.Review)+len(r.Unconverted) == 0 {
		fmt.Fprintln(w, "  nothing to migrate")
		return
	}
	fmt.Fprintf(w, "  origin       %s\n", r.Origin)
	node := func(n workflows.MigrateNote) string {
		if n.Node == "" {
			return "(workflow)"
		}
		return strconv.Quote(n.Node)
	}
	for _, n := range r.Converted {
		fmt.Fprintf(w, "  converted    %s: %s\n", node(n), n.Message)
	}
	for _, n := range r.Review {
		fmt.Fprintf(w, "  review       %s: %s\n", node(n), n.Message)
	}
	for _, n := range r.Unconverted {
		fmt.Fprintf(w, "  NOT CONVERTED %s: %s\n", node(n), n.Message)
	}
}

func abs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}
