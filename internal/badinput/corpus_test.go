package badinput

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/n8n-fn/n8n-fn/n8nproto"
	"github.com/n8n-fn/n8n-fn/runner"
	"github.com/n8n-fn/n8n-fn/workflows"
)

const corpusDir = "../../test-workflows/bad-input"

// limitsJSON is the optional "limits" of a case: the sidecar's limits when not the defaults.
type limitsJSON struct {
	MaxParamsBytes int `json:"maxParamsBytes"`
	MaxJSONDepth   int `json:"maxJSONDepth"`
	MaxHeaderBytes int `json:"maxHeaderBytes"`
}

func (l *limitsJSON) limits() workflows.Limits {
	if l == nil {
		return workflows.Limits{}
	}
	return workflows.Limits{MaxParamsBytes: l.MaxParamsBytes, MaxJSONDepth: l.MaxJSONDepth, MaxHeaderBytes: l.MaxHeaderBytes}
}

func expand(t *testing.T, s string) string {
	t.Helper()
	out, err := Expand(s)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// configBase is a valid sidecar environment the config cases change.
var configBase = map[string]string{
	"N8N_RUNNERS_AUTH_TOKEN": "token", "N8N_FN_SECRET": "0123456789abcdef0123", "N8N_FN_RUNNER_MODE": "none",
}

// run feeds one case to the code that reads its kind and returns the error it got.
func run(t *testing.T, kind string, c Case) error {
	switch kind {
	case "directive":
		var s struct {
			Node string      `json:"node"`
			Code string      `json:"code"`
			Lim  *limitsJSON `json:"limits"`
		}
		if err := c.Decode(&s); err != nil {
			t.Fatal(err)
		}
		h, err := s.Lim.limits().ParseHeader(expand(t, s.Code))
		if err != nil {
			return workflows.NodeError(s.Node, err)
		}
		if h == nil {
			return nil
		}
		_, err = workflows.ParseHeaderDirective(s.Node, h)
		return err
	case "params":
		var s struct {
			Function json.RawMessage `json:"function"`
			Params   string          `json:"params"`
			Lim      *limitsJSON     `json:"limits"`
		}
		if err := c.Decode(&s); err != nil {
			t.Fatal(err)
		}
		d, err := workflows.ParseDirective("fn", "/* @n8n-fn "+string(s.Function)+" */")
		if err != nil {
			t.Fatalf("the case's function does not parse: %v", err)
		}
		fn, ok := d.(*workflows.FunctionDirective)
		if !ok {
			t.Fatalf("the case's function is a %T", d)
		}
		_, err = s.Lim.limits().BindParams(fn, []byte(expand(t, s.Params)))
		return err
	case "call-params":
		var s struct {
			Params string      `json:"params"`
			Lim    *limitsJSON `json:"limits"`
		}
		if err := c.Decode(&s); err != nil {
			t.Fatal(err)
		}
		return s.Lim.limits().CheckParams([]byte(expand(t, s.Params)))
	case "context":
		var s struct {
			Item string `json:"item"`
		}
		if err := c.Decode(&s); err != nil {
			t.Fatal(err)
		}
		cc, err := workflows.ContextFromItem([]byte(expand(t, s.Item)))
		if err != nil || cc == nil {
			return err
		}
		signer, err := workflows.NewSigner([]byte("corpus-secret-0123456789"))
		if err != nil {
			t.Fatal(err)
		}
		return cc.Verify(signer, timeNow)
	case "callref":
		var s struct {
			Body string `json:"body"`
		}
		if err := c.Decode(&s); err != nil {
			t.Fatal(err)
		}
		r, err := workflows.ParseCallRef([]byte(expand(t, s.Body)))
		if err != nil {
			return err
		}
		signer, err := workflows.NewSigner([]byte("corpus-secret-0123456789"))
		if err != nil {
			t.Fatal(err)
		}
		return r.Verify(signer, timeNow)
	case "frame":
		var s struct {
			Frame    string `json:"frame"`
			MaxDepth int    `json:"maxDepth"`
		}
		if err := c.Decode(&s); err != nil {
			t.Fatal(err)
		}
		_, err := n8nproto.DecodeLimited([]byte(expand(t, s.Frame)), s.MaxDepth)
		return err
	case "limits":
		var s struct {
			Env map[string]string `json:"env"`
		}
		if err := c.Decode(&s); err != nil {
			t.Fatal(err)
		}
		_, err := workflows.LimitsFromEnv(func(k string) string { return s.Env[k] })
		return err
	case "config":
		var s struct {
			Env map[string]string `json:"env"`
		}
		if err := c.Decode(&s); err != nil {
			t.Fatal(err)
		}
		_, err := runner.ConfigFromEnv(func(k string) string {
			if v, ok := s.Env[k]; ok {
				return v
			}
			return configBase[k]
		})
		return err
	}
	t.Fatalf("unknown kind %q", kind)
	return nil
}

// TestBadInputCorpus runs every case that needs no n8n: each must fail with its error text.
func TestBadInputCorpus(t *testing.T) {
	files, err := Load(corpusDir)
	if err != nil {
		t.Fatal(err)
	}
	total, offline := 0, 0
	for _, f := range files {
		for _, c := range f.Cases {
			total++
			if c.Stack {
				continue
			}
			offline++
			t.Run(f.Kind+"/"+c.Name, func(t *testing.T) {
				if err := c.Check(run(t, f.Kind, c)); err != nil {
					t.Error(err)
				}
			})
		}
	}
	t.Logf("%d cases in %d files, %d run here", total, len(files), offline)
	if total < 60 {
		t.Errorf("the corpus has %d cases, at least 60 are wanted", total)
	}
}

func TestCorpusFormat(t *testing.T) {
	if got, err := Expand("a{{repeat 3 [}}b{{repeat 2 x y}}"); err != nil || got != "a[[[bx yx y" {
		t.Errorf("Expand = %q %v", got, err)
	}
	if _, err := Expand("{{repeat 99999999999 xx}}"); err == nil {
		t.Error("a huge repeat expanded")
	}
	c := Case{Name: "n", Error: []string{"needle"}, Absent: []string{"secret"}}
	if c.Check(errors.New("hay needle hay")) != nil || c.Check(nil) == nil || c.Check(errors.New("hay")) == nil ||
		c.Check(fmt.Errorf("needle secret")) == nil {
		t.Error("Check does not check")
	}
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no *.json") {
		t.Errorf("empty dir: %v", err)
	}
}

// timeNow is a fixed "now" for signature checks: the corpus holds expired and valid expiries.
var timeNow = mustTime("2029-01-01T00:00:00Z")

func mustTime(s string) (t time.Time) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}
