package workflows

// Item lineage through an n8n task data response. When one execution serves several calls
// (batching), the return node must tell which call each of its input items belongs to. n8n
// records that as item lineage: every item carries pairedItem, and every node run records where
// its input came from (source). ItemOrigins follows both back to the function node, the way n8n's
// own `$('Node').item` does (n8n-workflow 2.41 workflow-data-proxy.js resolvePairedItem):
//
//   - Before a node runs, n8n stamps each input item with pairedItem {item: i, input: k || undefined}
//     (core workflow-execute addPairedItemLineage), so the current node's inputData.main[0] item i
//     normally says {item: i}: item i of the previous node's output. The first hop takes its source
//     from connectionInputSource.main[input] ?? main[0].
//   - A hop from source {previousNode, previousNodeOutput, previousNodeRun} reads
//     runData[previousNode][previousNodeRun || 0].data.main[previousNodeOutput || 0][item]; unless
//     that is the target, the item's pairedItem (a number, an object, or an array of them) names
//     the next items, each through that run's source[input ?? 0] (or its sourceOverwrite).
//   - A reference to an input the run does not have is dropped; other failures (no pairedItem,
//     an item that does not exist, a run with no inputs reached before the target) fail that path
//     only. An item fails when none of its paths reaches the target, as in n8n.
//   - n8n fills a missing pairedItem before it stores a run when the answer is unambiguous (core
//     workflow-execute assignPairedItems), so stored run data already has it. The same rules are
//     applied here to run data that lacks it (older n8n, hand-made data).
//
// Where n8n's `.item` fails with "multiple matches", lineage keeps them all: an Aggregate-like item
// derives from every item it aggregates. Two more differences, both for clearer answers: an input
// item without pairedItem (n8n fails; it always stamps them) is taken at its position, and a run
// or output missing from the data response fails the whole call naming the node (n8n drops that
// path when another one works), since it means the data request did not ask for all nodes. The walk is iterative and memoised per (node, run,
// output, item), like n8n's PairedItemMemo, so recombining branches cost nothing extra, and it is
// bounded in depth and total work so crafted data cannot run it away.

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// Lineage errors.
var (
	ErrBadDataResponse = errors.New("n8n-fn: malformed task data response")
	ErrNoRunData       = errors.New("n8n-fn: task data response lacks a node's run data")
	ErrLineageLimit    = errors.New("n8n-fn: item lineage is too deep or too large")
)

// lineageLimits bound a walk so crafted data cannot run it away.
type lineageLimits struct {
	hops int // the longest chain one path may follow (node runs times items in a loop)
	work int // the steps of one ItemOrigins call (hops plus indices merged)
}

var defaultLineageLimits = lineageLimits{hops: 100_000, work: 1 << 26}

// Origins is the lineage of the current node's input items back to one upstream node.
type Origins struct {
	// Run and Output name the target's run and output that the indices refer to (0, 0 when
	// there are no input items). All lineage must land in one of them.
	Run, Output int
	// Items[i] lists, ascending and without duplicates, the indices of the target's output items
	// that input item i (inputData.main[0][i]) derives from. Never empty. Entries can share
	// memory with each other: treat them as read-only.
	Items [][]int
}

// LineageError says why one input item's lineage cannot be followed back to the target.
type LineageError struct {
	Item   int    // index in the current node's inputData.main[0]
	Target string // the node the lineage was followed back to
	Reason string
}

func (e *LineageError) Error() string {
	return fmt.Sprintf("n8n-fn: input item %d does not lead back to node %q: %s", e.Item, e.Target, e.Reason)
}

// ItemOrigins follows the lineage of every input item of the current node (inputData.main[0] of
// a broker:taskdataresponse's data, requested with dataOfNodes "all") back to the node named
// target, and returns for each input item the target's output items it derives from. An item
// with no path back to target fails with a *LineageError naming it; a data response that lacks a
// node's run data fails with ErrNoRunData naming the node. With a chunked input (each-item mode),
// Items[i] is the chunk's item i.
func ItemOrigins(dataResponse []byte, target string) (Origins, error) {
	return itemOrigins(dataResponse, target, defaultLineageLimits)
}

func itemOrigins(dataResponse []byte, target string, lim lineageLimits) (Origins, error) {
	if !gjson.ValidBytes(dataResponse) {
		return Origins{}, fmt.Errorf("%w: not valid JSON", ErrBadDataResponse)
	}
	// One copy; every gjson value below is a substring of it.
	root := gjson.Parse(string(dataResponse))
	if !root.IsObject() {
		return Origins{}, fmt.Errorf("%w: expected an object (the data of broker:taskdataresponse)", ErrBadDataResponse)
	}
	main := root.Get("inputData.main")
	if !main.IsArray() {
		return Origins{}, fmt.Errorf("%w: inputData.main is missing (the data request must include the input)", ErrBadDataResponse)
	}
	input := main.Get("0")
	if input.Type == gjson.Null {
		return Origins{}, nil // no items reached the node's first input
	}
	if !input.IsArray() {
		return Origins{}, fmt.Errorf("%w: inputData.main[0] is not an array of items", ErrBadDataResponse)
	}
	var (
		out Origins
		w   *walker // set up at the first item: no items need no lineage
		err error
	)
	input.ForEach(func(_, it gjson.Result) bool {
		if w == nil {
			w = &walker{target: target, lim: lim, tasks: map[taskKey]*task{}}
			if err = w.load(root); err != nil {
				return false
			}
		}
		var res []int
		if res, err = w.resolve(len(out.Items), it.Get("pairedItem")); err != nil {
			return false
		}
		out.Items = append(out.Items, res)
		return true
	})
	if err != nil {
		return Origins{}, err
	}
	if w != nil {
		out.Run, out.Output = w.space[0], w.space[1]
	}
	return out, nil
}

// srcRef is one ISourceData: {previousNode, previousNodeOutput?, previousNodeRun?}.
type srcRef struct {
	node        string
	run, output int
	state       uint8
}

const (
	srcNone uint8 = iota // null or absent
	srcOK
	srcBad
)

// pairRef is one IPairedItemData: a bare number or {item, input?, sourceOverwrite?}.
type pairRef struct {
	item, input int
	over        srcRef // srcNone: no sourceOverwrite
	bad         string // why the entry is unusable; "" if it is usable
}

type taskKey struct {
	node string
	run  int
}

// task is one ITaskData: runData[node][run], or a node's pin data in manual mode.
type task struct {
	node    string
	run     int
	sources []srcRef
	main    []gjson.Result // data.main: one entry per output
	outs    []*output
}

type output struct {
	n      int
	paired []string    // raw pairedItem of each item, "" where absent
	memo   []memoEntry // nil for the target's outputs, whose items are never walked through
}

const (
	memoNew uint8 = iota
	memoOnStack
	memoDone
)

type memoEntry struct {
	state uint8
	res   []int  // nil when failed
	fail  string // why, when failed
}

// frame is one item on the walk's explicit stack: its pairs are w.pairs[pairLo:pairHi].
type frame struct {
	t              *task   // nil for an input item of the current node (the first hop)
	out            *output // its output, nil for the first hop
	item           int
	pairLo, pairHi int
	next           int
	first          []int
	nOK            int
	moreLo         int // further successful child results are w.more[moreLo:]
	fail           string
}

type walker struct {
	target  string
	lim     lineageLimits
	cis     []srcRef // connectionInputSource.main
	runData map[string]gjson.Result
	pinData map[string]gjson.Result // manual mode only
	tasks   map[taskKey]*task

	haveSpace bool
	space     [2]int // target run, output
	ident     []int  // ident[k] == k, backing the one-index results

	item  int // the input item being resolved, for messages
	work  int
	stack []frame
	pairs []pairRef
	more  [][]int
}

func (w *walker) load(root gjson.Result) error {
	cis := root.Get("connectionInputSource")
	if !cis.IsObject() {
		return fmt.Errorf("%w: connectionInputSource is missing, so the input items' source is unknown", ErrBadDataResponse)
	}
	cis.Get("main").ForEach(func(_, v gjson.Result) bool {
		w.cis = append(w.cis, parseSource(v))
		return true
	})
	rd := root.Get("runExecutionData.resultData.runData")
	if rd.Exists() && !rd.IsObject() {
		return fmt.Errorf("%w: runExecutionData.resultData.runData is not an object", ErrBadDataResponse)
	}
	w.runData = map[string]gjson.Result{}
	rd.ForEach(func(k, v gjson.Result) bool {
		w.runData[k.String()] = v
		return true
	})
	// n8n falls back to pin data only in manual executions (getPinDataIfManualExecution).
	if root.Get("mode").String() == "manual" {
		w.pinData = map[string]gjson.Result{}
		root.Get("workflow.pinData").ForEach(func(k, v gjson.Result) bool {
			w.pinData[k.String()] = v
			return true
		})
	}
	if _, ok := w.runData[w.target]; !ok {
		if _, pinned := w.pinData[w.target]; !pinned {
			return fmt.Errorf("%w: node %q has no run data (it did not run in this execution, or the data request did not ask for all nodes: dataOfNodes \"all\")",
				ErrNoRunData, w.target)
		}
	}
	return nil
}

// jsIndex reads an index the way n8n does for `x || 0` / `x ?? 0`: absent or null is 0.
func jsIndex(v gjson.Result) (int, bool) {
	switch v.Type {
	case gjson.Null:
		return 0, true
	case gjson.Number:
		if v.Num >= 0 && v.Num < 1<<31 && v.Num == float64(int(v.Num)) {
			return int(v.Num), true
		}
	}
	return 0, false
}

func parseSource(v gjson.Result) srcRef {
	if v.Type == gjson.Null { // also absent
		return srcRef{state: srcNone}
	}
	if !v.IsObject() {
		return srcRef{state: srcBad}
	}
	node := v.Get("previousNode")
	run, okRun := jsIndex(v.Get("previousNodeRun"))
	out, okOut := jsIndex(v.Get("previousNodeOutput"))
	if node.Type != gjson.String || !okRun || !okOut {
		return srcRef{state: srcBad}
	}
	return srcRef{node: node.Str, run: run, output: out, state: srcOK}
}

func parsePair(v gjson.Result) pairRef {
	switch {
	case v.Type == gjson.Number:
		if k, ok := jsIndex(v); ok {
			return pairRef{item: k}
		}
	case v.IsObject():
		it := v.Get("item")
		k, ok := jsIndex(it)
		in, okIn := jsIndex(v.Get("input"))
		if it.Type != gjson.Number || !ok || !okIn {
			break
		}
		p := pairRef{item: k, input: in}
		if so := v.Get("sourceOverwrite"); so.Type != gjson.Null {
			if p.over = parseSource(so); p.over.state != srcOK {
				return pairRef{bad: "pairedItem has a malformed sourceOverwrite (expected {previousNode, previousNodeOutput?, previousNodeRun?})"}
			}
		}
		return p
	}
	// Not echoed: a Code node can put anything there.
	return pairRef{bad: "malformed pairedItem (expected an item index, {item, input?} or an array of them; got " + kind(v) + ")"}
}

func kind(v gjson.Result) string {
	switch {
	case v.IsObject():
		return "an object without a valid item or input"
	case v.IsArray():
		return "a nested array"
	case v.Type == gjson.Number:
		return "a number that is not an index"
	case v.Type == gjson.String:
		return "a string"
	}
	return "a boolean"
}

// pushPairs appends the entries of a raw pairedItem (none for null or []) to w.pairs.
func (w *walker) pushPairs(v gjson.Result) {
	if v.IsArray() {
		v.ForEach(func(_, e gjson.Result) bool {
			w.pairs = append(w.pairs, parsePair(e))
			return true
		})
		return
	}
	if v.Type != gjson.Null {
		w.pairs = append(w.pairs, parsePair(v))
	}
}

func (w *walker) task(node string, run int) (*task, error) {
	key := taskKey{node, run}
	if t, ok := w.tasks[key]; ok {
		return t, nil
	}
	var raw gjson.Result
	if runs, ok := w.runData[node]; ok && runs.IsArray() {
		raw = runs.Get(strconv.Itoa(run))
	}
	t := &task{node: node, run: run}
	switch pin, pinned := w.pinData[node]; {
	case raw.IsObject():
		raw.Get("source").ForEach(func(_, v gjson.Result) bool {
			t.sources = append(t.sources, parseSource(v))
			return true
		})
		if m := raw.Get("data.main"); m.IsArray() {
			t.main = m.Array()
		}
	case pinned && pin.IsArray():
		// n8n turns pin data into a task with one output and no source (pinDataToTask).
		t.main = []gjson.Result{pin}
	default:
		return nil, fmt.Errorf("%w: input item %d: no run data for node %q run %d (the data request must ask for all nodes: dataOfNodes \"all\")",
			ErrNoRunData, w.item, node, run)
	}
	t.outs = make([]*output, len(t.main))
	w.tasks[key] = t
	return t, nil
}

// output returns output o of t; with pairs it can also memoise walks through its items.
func (w *walker) output(t *task, o int, pairs bool) (*output, error) {
	if o >= len(t.main) || !t.main[o].IsArray() {
		return nil, fmt.Errorf("%w: input item %d: node %q run %d has no output %d, yet a later node's source names it",
			ErrBadDataResponse, w.item, t.node, t.run, o)
	}
	out := t.outs[o]
	if out == nil {
		// One pass over the items: skipping their json is most of the cost of a walk.
		out = &output{}
		t.main[o].ForEach(func(_, it gjson.Result) bool {
			out.paired = append(out.paired, it.Get("pairedItem").Raw)
			return true
		})
		out.n = len(out.paired)
		t.outs[o] = out
	}
	if pairs && out.memo == nil {
		out.memo = make([]memoEntry, out.n)
	}
	return out, nil
}

// defaultPair is n8n's assignPairedItems for an item of a stored run that lacks pairedItem: one
// input item -> item 0; as many items out as in (one output) -> the same index; many in, one
// out -> item 0. Otherwise n8n leaves it missing and so does this.
func (w *walker) defaultPair(t *task, outLen, k int) (pairRef, bool, error) {
	if len(t.sources) != 1 || t.sources[0].state != srcOK {
		return pairRef{}, false, nil
	}
	s := t.sources[0]
	st, err := w.task(s.node, s.run)
	if err != nil {
		return pairRef{}, false, err
	}
	so, err := w.output(st, s.output, false)
	if err != nil {
		return pairRef{}, false, err
	}
	switch n := so.n; {
	case n == 1:
		return pairRef{item: 0}, true, nil
	case len(t.main) == 1 && n == outLen:
		return pairRef{item: k}, true, nil
	case len(t.main) == 1 && outLen == 1 && n > 1:
		return pairRef{item: 0}, true, nil
	}
	return pairRef{}, false, nil
}

func (w *walker) spend(n int) error {
	w.work += n
	if w.work > w.lim.work {
		return fmt.Errorf("%w: input item %d: more than %d steps", ErrLineageLimit, w.item, w.lim.work)
	}
	return nil
}

// one returns the single-index origin set {k} of the target's output (k < len(w.ident)).
func (w *walker) one(k int) []int { return w.ident[k : k+1 : k+1] }

// resolve follows input item i (whose raw pairedItem is pi) back to the target.
func (w *walker) resolve(i int, pi gjson.Result) ([]int, error) {
	w.item = i
	w.stack = w.stack[:0]
	w.pairs = w.pairs[:0]
	w.more = w.more[:0]
	if !pi.Exists() {
		// n8n stamps every input item before the node runs; unstamped means its position.
		w.pairs = append(w.pairs, pairRef{item: i})
	} else {
		w.pushPairs(pi)
	}
	if len(w.pairs) == 0 {
		return nil, &LineageError{Item: i, Target: w.target, Reason: "its pairedItem is null or empty"}
	}
	w.stack = append(w.stack, frame{item: i, pairHi: len(w.pairs)})
	for {
		top := len(w.stack) - 1
		f := &w.stack[top]
		if f.next < f.pairHi-f.pairLo {
			p := w.pairs[f.pairLo+f.next]
			f.next++
			if err := w.spend(1); err != nil {
				return nil, err
			}
			if err := w.step(f, p); err != nil {
				return nil, err
			}
			continue
		}
		// Every pair of the frame is done: settle it and hand the result to its parent.
		res, fail, err := w.settle(f)
		if err != nil {
			return nil, err
		}
		done := *f
		w.stack = w.stack[:top]
		w.pairs = w.pairs[:done.pairLo]
		w.more = w.more[:done.moreLo]
		if done.out != nil {
			e := &done.out.memo[done.item]
			e.state, e.res, e.fail = memoDone, res, fail
		}
		if top == 0 {
			if res == nil {
				return nil, &LineageError{Item: i, Target: w.target, Reason: fail}
			}
			return res, nil
		}
		w.add(&w.stack[top-1], res, fail)
	}
}

func (w *walker) add(f *frame, res []int, fail string) {
	switch {
	case res == nil:
		if f.fail == "" {
			f.fail = fail
		}
	case f.nOK == 0:
		f.first = res
		f.nOK = 1
	default:
		w.more = append(w.more, res)
		f.nOK++
	}
}

// step follows one pair of frame f: to the target, to a settled item, or onto the stack.
func (w *walker) step(f *frame, p pairRef) error {
	src, fail := w.pairSource(f, p)
	if fail != "" {
		w.add(f, nil, fail)
		return nil
	}
	isTarget := src.node == w.target
	ct, err := w.task(src.node, src.run)
	if err != nil {
		return err
	}
	co, err := w.output(ct, src.output, !isTarget)
	if err != nil {
		return err
	}
	if p.item >= co.n {
		w.add(f, nil, fmt.Sprintf("it names item %d of node %q run %d output %d, which has %d items", p.item, src.node, src.run, src.output, co.n))
		return nil
	}
	if isTarget {
		return w.reachTarget(f, p.item, src, co.n)
	}
	return w.descend(f, p.item, src, ct, co)
}

// pairSource is the run output pair p of frame f points into; fail says why it points nowhere
// ("" when it does).
func (w *walker) pairSource(f *frame, p pairRef) (src srcRef, fail string) {
	if p.bad != "" {
		return srcRef{}, p.bad
	}
	src = p.over
	switch {
	case f.t == nil:
		if src.state == srcNone {
			src = w.firstHopSource(p.input)
		}
	case p.input >= len(f.t.sources):
		// n8n drops such a reference silently; it only matters when nothing else is found. It is
		// checked before sourceOverwrite, which does not make the input exist.
		if len(f.t.sources) == 0 {
			return srcRef{}, fmt.Sprintf("node %q has no input (a trigger or pinned data), so the lineage ends there", f.t.node)
		}
		return srcRef{}, fmt.Sprintf("item %d of node %q names input %d, but that run has %d", f.item, f.t.node, p.input, len(f.t.sources))
	case src.state == srcNone:
		src = f.t.sources[p.input]
	}
	switch src.state {
	case srcNone:
		return srcRef{}, "no source recorded for the input it came from"
	case srcBad:
		return srcRef{}, "a malformed source (previousNode, previousNodeOutput, previousNodeRun)"
	}
	return src, ""
}

// firstHopSource is where an input item of the current node without sourceOverwrite came from:
// connectionInputSource.main[input] ?? main[0], as n8n reads it (srcNone when there is neither).
func (w *walker) firstHopSource(input int) srcRef {
	if input < len(w.cis) && w.cis[input].state != srcNone {
		return w.cis[input]
	}
	if len(w.cis) > 0 {
		return w.cis[0]
	}
	return srcRef{}
}

// reachTarget ends a pair at item k of the target's run output src (n items). All items must end
// in the same run and output: indices of different ones could not be told apart.
func (w *walker) reachTarget(f *frame, k int, src srcRef, n int) error {
	space := [2]int{src.run, src.output}
	if !w.haveSpace {
		w.haveSpace, w.space = true, space
		w.ident = make([]int, n)
		for i := range w.ident {
			w.ident[i] = i
		}
	} else if w.space != space {
		return &LineageError{Item: w.item, Target: w.target, Reason: fmt.Sprintf(
			"it derives from run %d output %d of the node while other items derive from run %d output %d; indices of different runs or outputs cannot be told apart",
			src.run, src.output, w.space[0], w.space[1])}
	}
	w.add(f, w.one(k), "")
	return nil
}

// descend continues a pair through item k of output co of an intermediate task ct: with the
// item's settled result, or with a new frame for its own pairs on top of the stack.
func (w *walker) descend(f *frame, k int, src srcRef, ct *task, co *output) error {
	e := &co.memo[k]
	switch e.state {
	case memoDone:
		w.add(f, e.res, e.fail)
		return nil
	case memoOnStack:
		return fmt.Errorf("%w: input item %d: the lineage loops back to item %d of node %q run %d output %d",
			ErrLineageLimit, w.item, k, src.node, src.run, src.output)
	}
	if len(w.stack) >= w.lim.hops {
		return fmt.Errorf("%w: input item %d: more than %d hops back", ErrLineageLimit, w.item, w.lim.hops)
	}
	child := frame{t: ct, out: co, item: k, pairLo: len(w.pairs), moreLo: len(w.more)}
	if err := w.pushItemPairs(ct, co, k); err != nil {
		return err
	}
	child.pairHi = len(w.pairs)
	if child.pairHi == child.pairLo {
		e.state, e.fail = memoDone, fmt.Sprintf("item %d of node %q run %d has no pairedItem (the node did not say which input item it came from)", k, src.node, src.run)
		w.add(f, nil, e.fail)
		return nil
	}
	e.state = memoOnStack
	w.stack = append(w.stack, child)
	return nil
}

// pushItemPairs pushes the pairs of item k of output co of task ct: its pairedItem, or the one
// n8n would have assigned (defaultPair), or none.
func (w *walker) pushItemPairs(ct *task, co *output, k int) error {
	if raw := co.paired[k]; raw != "" {
		w.pushPairs(gjson.Parse(raw))
		return nil
	}
	dp, ok, err := w.defaultPair(ct, co.n, k)
	if err != nil {
		return err
	}
	if ok {
		w.pairs = append(w.pairs, dp)
	}
	return nil
}

// settle merges a frame's successful child results (nil and the first failure if none).
func (w *walker) settle(f *frame) ([]int, string, error) {
	switch f.nOK {
	case 0:
		if f.fail == "" {
			f.fail = "no pairedItem entry leads there"
		}
		return nil, f.fail, nil
	case 1:
		return f.first, "", nil
	}
	// Children often share one result (Aggregate after Split Out: every split item has its
	// parent's set); merge each distinct one once, or such chains would cost items squared.
	rest := w.more[f.moreLo:]
	if !slices.ContainsFunc(rest, func(r []int) bool { return !sameSet(r, f.first) }) {
		return f.first, "", nil // the common case: one parent reached along several paths
	}
	parts := make([][]int, 1, 1+len(rest))
	parts[0] = f.first
	total := len(f.first)
	var seen map[*int]int // for many children; a few are compared directly
	if len(rest) > 8 {
		seen = map[*int]int{&f.first[0]: len(f.first)}
	}
	for _, r := range rest {
		if seen != nil {
			if n, ok := seen[&r[0]]; ok && n == len(r) {
				continue
			}
			seen[&r[0]] = len(r)
		} else if slices.ContainsFunc(parts, func(p []int) bool { return sameSet(p, r) }) {
			continue
		}
		parts = append(parts, r)
		total += len(r)
	}
	if len(parts) == 1 {
		return f.first, "", nil
	}
	if err := w.spend(total); err != nil {
		return nil, "", err
	}
	merged := make([]int, 0, total)
	for _, r := range parts {
		merged = append(merged, r...)
	}
	slices.Sort(merged)
	return slices.Clip(slices.Compact(merged)), "", nil
}

// sameSet says whether a and b are the same (shared) result; results are never empty.
func sameSet(a, b []int) bool { return len(a) == len(b) && &a[0] == &b[0] }

// MixedCallsError reports input items whose lineage reaches items of more than one call.
type MixedCallsError struct {
	Items []int    // the input items, ascending
	Calls []string // the calls the first of them derives from
}

func (e *MixedCallsError) Error() string {
	shown := e.Items
	if len(shown) > 5 {
		shown = shown[:5]
	}
	idx := make([]string, len(shown))
	for i, it := range shown {
		idx[i] = strconv.Itoa(it)
	}
	more := ""
	if len(e.Items) > len(shown) {
		more = fmt.Sprintf(" (and %d more)", len(e.Items)-len(shown))
	}
	return fmt.Sprintf("n8n-fn: input items %s%s each derive from several calls (item %d from %s), so their result cannot go to one caller; "+
		"keep the items of different calls apart between the function node and the return node (e.g. do not aggregate across calls)",
		strings.Join(idx, ", "), more, e.Items[0], strings.Join(e.Calls, ", "))
}

// GroupByCall assigns each input item to the call it derives from: origins as from ItemOrigins,
// callOf[j] the call of the target's output item j. It returns the input items of each call,
// ascending. Items whose lineage reaches several calls fail with a *MixedCallsError naming them.
func GroupByCall[K comparable](origins [][]int, callOf []K) (map[K][]int, error) {
	groups := map[K][]int{}
	var mixed *MixedCallsError
	for i, org := range origins {
		if len(org) == 0 {
			return nil, fmt.Errorf("n8n-fn: input item %d has no origin", i)
		}
		for _, j := range org {
			if j < 0 || j >= len(callOf) {
				return nil, fmt.Errorf("n8n-fn: input item %d derives from item %d of the function node, which has %d items", i, j, len(callOf))
			}
		}
		call := callOf[org[0]]
		several := false
		for _, j := range org[1:] {
			if callOf[j] != call {
				several = true
				break
			}
		}
		if !several {
			groups[call] = append(groups[call], i)
			continue
		}
		if mixed == nil {
			mixed = &MixedCallsError{}
			seen := map[K]bool{}
			for _, j := range org {
				if !seen[callOf[j]] {
					seen[callOf[j]] = true
					mixed.Calls = append(mixed.Calls, fmt.Sprint(callOf[j]))
				}
			}
		}
		mixed.Items = append(mixed.Items, i)
	}
	if mixed != nil {
		return nil, mixed
	}
	return groups, nil
}
