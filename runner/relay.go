package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/n8n-fn/n8n-fn/n8nproto"
)

var (
	errNoRunner         = errors.New("no task runner behind the sidecar")
	errUpstreamCanceled = errors.New("task cancelled by n8n")
)

// maxRehands bounds how often one task is handed to another runner because the previous one went
// away before it started the task.
const maxRehands = 3

// relay hands an ordinary task to a runner behind the sidecar and pumps every message of it both
// ways, verbatim, until the runner ends it, n8n cancels it or the sidecar gives up. A runner that
// disconnects (crashed, or dropped for missing heartbeats) before it started the task does not fail
// it: the task goes to the next runner. n8n's own broker fails every in-flight task of a lost runner;
// handing it on is safe here because no code of it can have run (startsWithRequest).
func (s *Sidecar) relay(ctx context.Context, t *n8nproto.UpstreamTask) {
	log := s.log.WithFields(logrus.Fields{"task": t.ID, "type": t.TaskType, "path": "relay"})
	rehandable := startsWithRequest(t)
	start, outcome := time.Now(), "relayed"
	defer func() { s.met.Relayed(t.TaskType, outcome, time.Since(start)) }()
	for attempt := 0; ; attempt++ {
		d, err := s.acquire(ctx, t)
		if err != nil {
			outcome = "error"
			switch {
			case errors.Is(err, errUpstreamCanceled):
				outcome = "cancelled"
				log.WithField("reason", t.CancelReason()).Debug("cancelled by n8n before a runner took it")
			case errors.Is(err, errNoRunner):
				outcome = "no_runner"
				log.WithField("waited", s.cfg.NoRunnerWait.String()).Warn("no runner behind the sidecar took the task: failing it")
				s.failUpstream(t, s.noRunnerError(t.TaskType), log)
			default:
				log.WithError(err).Warn("could not hand the task to a runner")
				s.failUpstream(t, errorJSON("n8n-fn: could not hand this task to the task runner behind the sidecar: "+err.Error(),
					"The sidecar is probably shutting down; run the node again."), log)
			}
			return
		}
		log.WithField("runner", d.RunnerID).Debug("relaying")
		if !s.pump(ctx, t, d, log, rehandable && attempt < maxRehands) {
			return
		}
		log.WithField("runner", d.RunnerID).Warn("runner behind the sidecar went away before it started the task: handing the task to the next runner")
	}
}

// startsWithRequest reports whether the official runner asks n8n for the task's data before it runs
// any code (every Code-node mode except runCode), so a runner that went away without a single message
// for the task has not run it and the task may go to another runner.
func startsWithRequest(t *n8nproto.UpstreamTask) bool {
	if t.TaskType != "javascript" {
		return false
	}
	cs, err := n8nproto.ParseCodeSettings(t.Settings)
	return err == nil && (cs.NodeMode == n8nproto.NodeModeAllItems || cs.NodeMode == n8nproto.NodeModeEachItem)
}

// acquire waits for a runner behind the sidecar to take the task, like n8n's broker waits for a
// runner offer: up to NoRunnerWait (n8n's N8N_RUNNERS_TASK_REQUEST_TIMEOUT, 60 s), started over when
// a launcher defers or a runner does not answer, then errNoRunner. With no runner mode there is
// nothing to wait for.
func (s *Sidecar) acquire(ctx context.Context, t *n8nproto.UpstreamTask) (*n8nproto.DownstreamTask, error) {
	if s.cfg.RunnerMode == ModeNone && !s.broker.HasRunner(t.TaskType) {
		return nil, errNoRunner
	}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-actx.Done():
		case <-t.Cancelled():
			cancel(errUpstreamCanceled)
		}
	}()
	d, err := s.broker.AcquireWithin(actx, t.TaskType, t.ID, t.Settings, s.cfg.NoRunnerWait)
	if err != nil {
		if errors.Is(err, n8nproto.ErrRequestTimeout) {
			return nil, errNoRunner
		}
		if cause := context.Cause(actx); cause != nil && !errors.Is(cause, context.Canceled) {
			return nil, cause
		}
		return nil, fmt.Errorf("acquire a runner: %w", err)
	}
	return d, nil
}

// pump forwards messages until the task ends. It never inspects payloads: relaying must be
// transparent. It returns true, with the task still open upstream, when rehand allows it and the
// runner disconnected before it sent anything for the task (so it never started it).
func (s *Sidecar) pump(ctx context.Context, t *n8nproto.UpstreamTask, d *n8nproto.DownstreamTask, log *logrus.Entry, rehand bool) bool {
	up, down := t.Incoming(), d.Incoming()
	fromRunner := 0
	cancelDown := func(reason string) {
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := d.Cancel(cctx, reason); err != nil {
			log.WithError(err).Debug("could not cancel the task downstream")
		}
	}
	for {
		select {
		case m, ok := <-down:
			if !ok {
				cause := d.Err()
				if rehand && fromRunner == 0 && errors.Is(cause, n8nproto.ErrRunnerDisconnected) {
					return true
				}
				log.WithError(cause).Warn("runner behind the sidecar disconnected during the task")
				s.failUpstream(t, runnerLostError(cause), log)
				return false
			}
			fromRunner++
			switch m := m.(type) {
			case n8nproto.TaskDone:
				if err := t.Done(ctx, m.Data); err != nil {
					log.WithError(err).Warn("could not pass the result to n8n")
				}
				return false
			case n8nproto.TaskError:
				if err := t.Fail(ctx, m.Error); err != nil {
					log.WithError(err).Warn("could not pass the task error to n8n")
				}
				return false
			default:
				if err := t.Send(ctx, m); err != nil {
					log.WithError(err).WithField("msg", m.MessageType()).Warn("lost the connection to n8n during the task")
					cancelDown("n8n-fn lost the connection to n8n")
					return false
				}
			}
		case m, ok := <-up:
			if !ok {
				reason := t.CancelReason()
				if reason == "" {
					reason = "n8n-fn lost the connection to n8n"
				}
				log.WithField("reason", reason).Info("task ended by n8n")
				cancelDown(reason)
				return false
			}
			if c, isCancel := m.(n8nproto.TaskCancel); isCancel {
				log.WithField("reason", c.Reason).Info("task cancelled by n8n")
				cancelDown(c.Reason)
				return false
			}
			if err := d.Send(ctx, m); err != nil {
				// The runner is gone; its Incoming closes next and reports why.
				log.WithError(err).WithField("msg", m.MessageType()).Debug("could not forward to the runner")
			}
		case <-t.Cancelled():
			log.WithField("reason", t.CancelReason()).Info("task cancelled by n8n")
			cancelDown(t.CancelReason())
			return false
		case <-ctx.Done():
			log.Warn("shutdown grace over: aborting the task")
			cancelDown("Task aborted because the n8n-fn sidecar is shutting down")
			s.failUpstream(t, errorJSON("Task aborted because the n8n-fn sidecar is shutting down",
				fmt.Sprintf("The task was still running when the sidecar's shutdown grace period (N8N_FN_SHUTDOWN_GRACE=%s) ended. Run the node again.", s.cfg.ShutdownGrace)), log)
			return false
		}
	}
}

// failUpstream ends the task toward n8n with an error, on its own short deadline (the task's
// context may already be over).
func (s *Sidecar) failUpstream(t *n8nproto.UpstreamTask, errData json.RawMessage, log *logrus.Entry) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.Fail(ctx, errData); err != nil {
		log.WithError(err).Warn("could not send the task error to n8n")
	}
}

func (s *Sidecar) noRunnerError(taskType string) json.RawMessage {
	msg := fmt.Sprintf("n8n-fn: no %s task runner is connected to the n8n-fn sidecar %s, so this Code node cannot run", taskType, s.cfg.ID)
	var desc string
	switch s.cfg.RunnerMode {
	case ModeNone:
		desc = "The sidecar runs with N8N_FN_RUNNER_MODE=none and only answers n8n-fn directives. To run ordinary Code nodes, " +
			"set N8N_FN_RUNNER_MODE=spawn and N8N_FN_RUNNER_DIR to the @n8n/task-runner package directory, or N8N_FN_RUNNER_MODE=external " +
			"and point the official runner/launcher at N8N_RUNNERS_TASK_BROKER_URI=" + brokerURL(s.brokerLn.Addr()) + "."
	case ModeExternal:
		desc = fmt.Sprintf("N8N_FN_RUNNER_MODE=external: start the official task runner or launcher with N8N_RUNNERS_TASK_BROKER_URI=%s "+
			"and N8N_RUNNERS_AUTH_TOKEN set to the sidecar's N8N_FN_BROKER_AUTH_TOKEN. No runner took the task within %s (N8N_FN_NO_RUNNER_WAIT, "+
			"like n8n's N8N_RUNNERS_TASK_REQUEST_TIMEOUT).", brokerURL(s.brokerLn.Addr()), s.cfg.NoRunnerWait)
	default:
		desc = fmt.Sprintf("The sidecar starts the official runner itself (N8N_FN_RUNNER_COMMAND=%s, N8N_FN_RUNNER_ARGS, N8N_FN_RUNNER_DIR=%s) "+
			"but no runner took the task within %s (N8N_FN_NO_RUNNER_WAIT). Check the sidecar's log for the runner's exit messages.", s.cfg.RunnerCommand, s.cfg.RunnerDir, s.cfg.NoRunnerWait)
	}
	return errorJSON(msg, desc)
}

// runnerLostError mirrors n8n's own TaskRunnerDisconnectedError for a runner that vanished mid-task.
func runnerLostError(cause error) json.RawMessage {
	why := "connection closed"
	if cause != nil {
		why = cause.Error()
	}
	return errorJSON("Node execution failed: the task runner behind the n8n-fn sidecar disconnected ("+why+")",
		"The runner process ended while it ran this task (it may have run out of memory). The sidecar restarts it; "+
			"run the node again. If it keeps happening, process fewer items at a time or give the runner more memory (NODE_OPTIONS=--max-old-space-size=...).")
}

// errorJSON is a runner:taskerror payload in the official runner's shape.
func errorJSON(message, description string) json.RawMessage {
	b, _ := json.Marshal(map[string]any{
		"message":     message,
		"description": description,
		"stack":       "Error: " + message + "\n    at n8n-fn sidecar",
	})
	return b
}
