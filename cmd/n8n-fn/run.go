package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/n8n-fn/n8n-fn/registry"
	"github.com/n8n-fn/n8n-fn/runner"
)

// runCmd runs the sidecar until SIGINT/SIGTERM. Configuration comes only from the environment.
func runCmd(ctx context.Context, args []string, stdout, _ io.Writer) error {
	for _, a := range args {
		switch a {
		case "-h", "--help", "help":
			runUsage(stdout)
			return nil
		default:
			return fmt.Errorf("%w: unexpected argument %q (n8n-fn run takes no arguments; it is configured by environment variables, see n8n-fn run --help)", errUsage, a)
		}
	}
	cfg, err := runner.ConfigFromEnv(os.Getenv)
	if err != nil {
		return fmt.Errorf("%w (see n8n-fn run --help)", err)
	}
	log := cfg.Logger().WithField("sidecar", cfg.ID)
	// Before any Redis client exists: go-redis's own lines (Redis down, say) in the same format.
	registry.UseLogrus(log)
	s, err := runner.New(cfg, log)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

func runUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: n8n-fn run\n\nRuns the n8n-fn sidecar next to one n8n process (main or worker): the external task runner\n"+
		"toward n8n, a broker for the official runner behind it, and the function runtime.\nSIGTERM stops taking tasks, lets running ones finish, then exits.\n\nEnvironment:\n")
	vars := runner.EnvVars()
	nameW, defW := 0, 0
	for _, v := range vars {
		nameW, defW = max(nameW, len(v.Name)), max(defW, min(len(v.Default), 26))
	}
	for _, v := range vars {
		def := v.Default
		if def == "" {
			def = `""`
		}
		// The descriptions are the README's too: its `code` marks read as noise in a terminal.
		fmt.Fprintf(w, "  %-*s  %-*s  %s\n", nameW, v.Name, defW, def, strings.ReplaceAll(v.Description, "`", ""))
	}
}
