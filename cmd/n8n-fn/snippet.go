package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/n8n-fn/n8n-fn/workflows"
)

const snippetUsage = `Usage:
  n8n-fn snippet function NAME [--param name:type[:required][=default]]... [--scope global|workflow]
                 [--timeout MS] [--max-concurrency N] [--global-concurrency N] [--description TEXT] [--with-return] [--workflow TITLE]
  n8n-fn snippet call NAME [--scope global|workflow|WORKFLOW_ID] [--mode eachItem|allItems] [--timeout MS]
                 [--retries N] [--backoff MS] [--result-field FIELD] [--idempotency-key FIELD.PATH]
                 [--wait-for-live MS] [--workflow TITLE]
  n8n-fn snippet return [--fail [--message TEXT]] [--workflow TITLE]

Prints n8n JSON: copy it and paste it into the n8n editor (Ctrl+V on the canvas). With --workflow
TITLE the output is a whole workflow, importable with "Import from File" or n8n's API.
A function snippet is the Webhook node (POST, "When Last Node Finishes", all entries) and the
function node after it; --with-return adds a return node. Param types: string, number, boolean,
object, array, any (unchecked). Example:
  n8n-fn snippet function add --param a:number:required --param b:number=0 --with-return
`

func snippetCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, snippetUsage)
		if len(args) == 0 {
			return fmt.Errorf("%w: which snippet? function, call or return", errUsage)
		}
		return nil
	}
	kind, rest := args[0], args[1:]
	fs := flag.NewFlagSet("snippet "+kind, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, snippetUsage) }
	workflowTitle := fs.String("workflow", "", "print a whole importable workflow with this name")
	frag := snippetFlags(kind, fs)
	if frag == nil {
		fs.Usage()
		return fmt.Errorf("%w: unknown snippet %q (function, call or return)", errUsage, kind)
	}
	name, err := parseSnippetArgs(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if kind != workflows.OpReturn && name == "" {
		return fmt.Errorf("%w: snippet %s needs the function NAME", errUsage, kind)
	}
	if kind == workflows.OpReturn && name != "" {
		return fmt.Errorf("%w: snippet return takes no name", errUsage)
	}
	f, err := frag(name)
	if err != nil {
		// Directive errors say which field is wrong; present them as usage errors.
		if errors.Is(err, workflows.ErrDirective) {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		return fmt.Errorf("snippet: %w", err)
	}
	return writeSnippet(stdout, f, *workflowTitle)
}

// snippetFragment builds the snippet of one kind for a function NAME from its parsed flags.
type snippetFragment func(name string) (*workflows.Fragment, error)

// snippetFlags defines the flags of one kind of snippet on fs; nil for an unknown kind.
func snippetFlags(kind string, fs *flag.FlagSet) snippetFragment {
	switch kind {
	case workflows.OpFunction:
		return functionSnippetFlags(fs)
	case workflows.OpCall:
		return callSnippetFlags(fs)
	case workflows.OpReturn:
		return returnSnippetFlags(fs)
	}
	return nil
}

func functionSnippetFlags(fs *flag.FlagSet) snippetFragment {
	var params paramFlags
	fs.Var(&params, "param", "a param: name:type[:required][=default] (repeatable)")
	scope := fs.String("scope", workflows.ScopeGlobal, "global or workflow")
	timeout := fs.Int("timeout", workflows.DefaultFunctionTimeoutMs, "function timeout in ms")
	maxConc := fs.Int("max-concurrency", 0, "calls of this function each sidecar dispatches at once (0 = the dispatcher default)")
	globalConc := fs.Int("global-concurrency", 0, "calls of this function that run at once across every sidecar (0 = no global bound)")
	desc := fs.String("description", "", "what the function does")
	withReturn := fs.Bool("with-return", false, "add a return node after the function node")
	return func(name string) (*workflows.Fragment, error) {
		fn := &workflows.FunctionDirective{Name: name, Scope: *scope, Params: params, TimeoutMs: *timeout, MaxConcurrency: *maxConc, GlobalConcurrency: *globalConc, Description: *desc}
		return workflows.FunctionSnippet(fn, workflows.SnippetOptions{WithReturn: *withReturn})
	}
}

func callSnippetFlags(fs *flag.FlagSet) snippetFragment {
	scope := fs.String("scope", workflows.ScopeGlobal, "global, workflow (this workflow) or a workflow id")
	mode := fs.String("mode", workflows.ModeEachItem, "eachItem (one call per item) or allItems (one call)")
	timeout := fs.Int("timeout", 0, "call timeout in ms (0 = the function's timeout)")
	retries := fs.Int("retries", 0, "retries after a failed or timed-out call")
	backoff := fs.Int("backoff", workflows.DefaultRetryBackoffMs, "first retry delay in ms (doubles per retry)")
	resultField := fs.String("result-field", "", "keep the input item and put the result under this field")
	idem := fs.String("idempotency-key", "", "field path in the input item that identifies the call")
	waitLive := fs.Int("wait-for-live", workflows.DefaultWaitForLiveMs, "ms to wait for a live sidecar serving the function")
	return func(name string) (*workflows.Fragment, error) {
		c := &workflows.CallDirective{Function: name, Scope: *scope, Mode: *mode, TimeoutMs: *timeout, Retries: *retries,
			RetryBackoffMs: *backoff, ResultField: *resultField, IdempotencyKey: *idem, WaitForLiveMs: *waitLive}
		return workflows.CallSnippet(c, workflows.SnippetOptions{})
	}
}

func returnSnippetFlags(fs *flag.FlagSet) snippetFragment {
	fail := fs.Bool("fail", false, "the fail form: send an error to the caller")
	message := fs.String("message", "", "with --fail: the error message (default: the item's error or message field)")
	return func(string) (*workflows.Fragment, error) {
		return workflows.ReturnSnippet(&workflows.ReturnDirective{Fail: *fail, Message: *message}, workflows.SnippetOptions{})
	}
}

// parseSnippetArgs parses the flags and returns NAME, which may come before or after them ("" when
// none). flag.ErrHelp comes back as it is for -h before NAME; every other error is a usage error.
func parseSnippetArgs(fs *flag.FlagSet, rest []string) (string, error) {
	var name string
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		name, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", err
		}
		return "", fmt.Errorf("%w: %v", errUsage, err)
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return "", fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	if fs.NArg() > 0 {
		return "", fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	return name, nil
}

// writeSnippet prints the fragment, as a whole workflow when it has a title.
func writeSnippet(stdout io.Writer, f *workflows.Fragment, workflowTitle string) error {
	var out []byte
	var err error
	if workflowTitle != "" {
		out, err = f.WorkflowJSON(workflowTitle)
	} else {
		out, err = f.JSON()
	}
	if err != nil {
		return fmt.Errorf("snippet: %w", err)
	}
	if _, err := stdout.Write(out); err != nil {
		return fmt.Errorf("snippet: write: %w", err)
	}
	return nil
}

// paramFlags collects repeated --param flags.
type paramFlags []workflows.Param

func (p *paramFlags) String() string { return fmt.Sprint(len(*p), " params") }

func (p *paramFlags) Set(spec string) error {
	prm, err := workflows.ParseParamSpec(spec)
	if err != nil {
		return err
	}
	*p = append(*p, prm)
	return nil
}
