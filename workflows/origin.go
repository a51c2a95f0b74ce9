package workflows

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// The origin package's versions differ in what a converted workflow must reproduce (read from
// its code at each version tag, github.com/mrowrpurr/n8n-nodes-function; see MIGRATION.md):
//
//	                      0.1.0-0.1.1        0.1.2-0.1.11         0.1.12             0.2.0-0.2.1
//	function item         caller+params      caller+params        params only        caller+params
//	defaults, required    applied            applied              ignored            ignored
//	Store Response off    result discarded   merged into item     merged into item   discarded
//	return value          as returned,       objects copied without _functionCall (arrays
//	                      falsy -> none      become {"0":..}); null/undefined -> none
//	return code throws    value {_error..}   the call fails
//
// (0.1.0-0.1.1 ran in one process; 0.1.2 on, queue mode over Redis: its semantics are the ones
// converted. In-process mode of later versions merged or discarded as the same version's queue mode
// did, except 0.1.2-0.1.12, which also merged there.)

// OriginEra groups the origin versions that behave the same for the migration.
type OriginEra int

const (
	// EraMemory is 0.1.0 and 0.1.1: in-process only, callers found functions by name.
	EraMemory OriginEra = iota + 1
	// EraStreams is 0.1.2 to 0.1.11: Redis streams, Store Response off merges the value.
	EraStreams
	// EraParamsOnly is 0.1.12: the function item is the params alone, no defaults.
	EraParamsOnly
	// EraPrefixed is 0.2.0 and 0.2.1: caller item + params, no defaults, Store Response off discards.
	EraPrefixed
)

func (e OriginEra) String() string {
	switch e {
	case EraMemory:
		return "0.1.0-0.1.1"
	case EraStreams:
		return "0.1.2-0.1.11"
	case EraParamsOnly:
		return "0.1.12"
	case EraPrefixed:
		return "0.2.0-0.2.1"
	}
	return "unknown"
}

var originVersionRe = regexp.MustCompile(`^v?0\.(1|2)\.(\d+)$`)

// ParseOriginVersion reads a version of the origin package ("0.1.5", "0.2.1") into its era.
func ParseOriginVersion(s string) (OriginEra, error) {
	m := originVersionRe.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("origin version %q: expected 0.1.0 .. 0.1.12 or 0.2.0 .. 0.2.1 (the n8n-nodes-function version installed: npm ls n8n-nodes-function in n8n's nodes directory)", s)
	}
	patch, _ := strconv.Atoi(m[2])
	switch {
	case m[1] == "2" && patch <= 1:
		return EraPrefixed, nil
	case m[1] == "1" && patch <= 1:
		return EraMemory, nil
	case m[1] == "1" && patch <= 11:
		return EraStreams, nil
	case m[1] == "1" && patch == 12:
		return EraParamsOnly, nil
	}
	return 0, fmt.Errorf("origin version %q is not a released n8n-nodes-function version (0.1.0 .. 0.1.12, 0.2.0, 0.2.1)", s)
}

// detectEra guesses the origin version from parameters only some versions have (n8n leaves
// parameters at their default out of the saved JSON, so absence proves little). It returns the
// era and why; EraPrefixed with a "not detected" reason when nothing tells.
func detectEra(wfs []*Workflow) (OriginEra, string) {
	var memory, code, desc string
	for _, w := range wfs {
		for _, n := range w.Nodes {
			where := fmt.Sprintf("node %q of workflow %s", n.Name, w.Label())
			switch n.Type {
			case OriginFunction:
				if n.Param("functionDescription").Exists() && desc == "" {
					desc = where
				}
				if (n.Param("enableCode").Exists() || n.Param("jsCode").Exists()) && code == "" {
					code = where
				}
			case OriginCall:
				if (n.Param("globalFunction").Exists() || !n.Param("workflowId").Exists()) && memory == "" {
					memory = where
				}
			}
		}
	}
	switch {
	case desc != "":
		return EraPrefixed, "detected 0.2.x: functionDescription (0.2.0 on) in " + desc
	case memory != "":
		return EraMemory, "detected 0.1.0/0.1.1: a Call Function without a workflow (0.1.2 on require one) in " + memory
	case code != "":
		return EraStreams, "assumed 0.1.2-0.1.11: the Function code option (up to 0.1.11) in " + code + "; pass --origin if it was 0.1.0/0.1.1"
	}
	return EraPrefixed, "origin version not detected: assumed 0.2.x (Store Response off discards the result); pass --origin 0.1.x if the workflows ran on 0.1.2-0.1.12, where it was merged into the item"
}
