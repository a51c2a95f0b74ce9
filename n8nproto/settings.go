package n8nproto

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Code-node modes (settings.nodeMode).
const (
	NodeModeAllItems = "runOnceForAllItems"
	NodeModeEachItem = "runOnceForEachItem"
	NodeModeRunCode  = "runCode" // Sort / Item Lists "code" mode (2.x): no data requests
)

// CodeSettings is the part of a javascript task's settings that n8n-fn looks at. The caller keeps the
// raw settings to relay them unchanged.
type CodeSettings struct {
	Code           string
	NodeMode       string
	WorkflowMode   string
	ContinueOnFail bool
	Chunk          *Chunk // each-item mode only: the window of input items of this task
}

// Chunk is a window of input items: n8n runs each-item mode in chunks of 1,000 items, one task each.
type Chunk struct {
	StartIndex int `json:"startIndex"`
	Count      int `json:"count"`
}

// ParseCodeSettings reads broker:tasksettings.settings of a Code-node task.
func ParseCodeSettings(raw json.RawMessage) (CodeSettings, error) {
	if len(raw) == 0 {
		return CodeSettings{}, errors.New("parse code settings: empty settings")
	}
	var s struct {
		Code           *string `json:"code"`
		NodeMode       string  `json:"nodeMode"`
		WorkflowMode   string  `json:"workflowMode"`
		ContinueOnFail bool    `json:"continueOnFail"`
		Chunk          *Chunk  `json:"chunk"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return CodeSettings{}, fmt.Errorf("parse code settings: %w", err)
	}
	if s.Code == nil {
		return CodeSettings{}, errors.New("parse code settings: no \"code\" field (not a Code-node task?)")
	}
	return CodeSettings{Code: *s.Code, NodeMode: s.NodeMode, WorkflowMode: s.WorkflowMode,
		ContinueOnFail: s.ContinueOnFail, Chunk: s.Chunk}, nil
}
