package replay

import (
	"fmt"
	"sort"
	"strings"

	"github.com/tidwall/gjson"
)

// Match compares got with want: objects need every key of want (extra keys in got are fine),
// arrays the same length and element-wise matches, scalars equal values (numbers as numbers).
// It returns "" on a match, else where and how they differ.
func Match(want, got []byte) string {
	return match("$", gjson.ParseBytes(want), gjson.ParseBytes(got))
}

func match(path string, want, got gjson.Result) string {
	switch {
	case want.IsObject():
		if !got.IsObject() {
			return fmt.Sprintf("%s: want an object, got %s", path, clip(got.Raw))
		}
		var keys []string
		want.ForEach(func(k, _ gjson.Result) bool { keys = append(keys, k.String()); return true })
		sort.Strings(keys)
		for _, k := range keys {
			g := got.Get(gjson.Escape(k))
			if !g.Exists() {
				return fmt.Sprintf("%s.%s: missing (got %s)", path, k, clip(got.Raw))
			}
			if d := match(path+"."+k, want.Get(gjson.Escape(k)), g); d != "" {
				return d
			}
		}
		return ""
	case want.IsArray():
		if !got.IsArray() {
			return fmt.Sprintf("%s: want an array, got %s", path, clip(got.Raw))
		}
		w, g := want.Array(), got.Array()
		if len(w) != len(g) {
			return fmt.Sprintf("%s: want %d elements, got %d: %s", path, len(w), len(g), clip(got.Raw))
		}
		for i := range w {
			if d := match(fmt.Sprintf("%s[%d]", path, i), w[i], g[i]); d != "" {
				return d
			}
		}
		return ""
	case want.Type == gjson.Number:
		if got.Type != gjson.Number || got.Float() != want.Float() {
			return fmt.Sprintf("%s: want %s, got %s", path, want.Raw, clip(got.Raw))
		}
		return ""
	default:
		if want.Type != got.Type || want.String() != got.String() {
			return fmt.Sprintf("%s: want %s, got %s", path, clip(want.Raw), clip(got.Raw))
		}
		return ""
	}
}

// itemErrors returns the "error" fields of an answer's items (an array of objects or one object):
// what a node with "On Error: Continue" outputs instead of failing.
func itemErrors(body []byte) []string {
	doc := gjson.ParseBytes(body)
	items := []gjson.Result{doc}
	if doc.IsArray() {
		items = doc.Array()
	}
	var out []string
	for _, it := range items {
		e := it.Get("error")
		switch {
		case e.Type == gjson.String:
			out = append(out, e.Str)
		case e.IsObject():
			out = append(out, e.Get("message").String()+" "+e.Get("description").String())
		}
	}
	return out
}

// workers collects the distinct values of field over an answer's items.
func workers(body []byte, field string, into map[string]bool) {
	doc := gjson.ParseBytes(body)
	items := []gjson.Result{doc}
	if doc.IsArray() {
		items = doc.Array()
	}
	for _, it := range items {
		if v := it.Get(gjson.Escape(field)); v.Exists() && v.String() != "" {
			into[v.String()] = true
		}
	}
}

// maxOverlap is the largest number of items whose [startedAt, endedAt] intervals contain one
// common instant.
func maxOverlap(body []byte) int {
	type ev struct {
		t     float64
		delta int
	}
	var evs []ev
	for _, it := range gjson.ParseBytes(body).Array() {
		s, e := it.Get("startedAt"), it.Get("endedAt")
		if s.Type == gjson.Number && e.Type == gjson.Number && e.Float() >= s.Float() {
			evs = append(evs, ev{s.Float(), 1}, ev{e.Float(), -1})
		}
	}
	// Ends sort after starts at the same instant: touching intervals count as overlapping.
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].t != evs[j].t {
			return evs[i].t < evs[j].t
		}
		return evs[i].delta > evs[j].delta
	})
	best, cur := 0, 0
	for _, e := range evs {
		cur += e.delta
		best = max(best, cur)
	}
	return best
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

func clip(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return "(nothing)"
	}
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}
