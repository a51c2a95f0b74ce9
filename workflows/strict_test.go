package workflows

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// Integers are integers in every integer field: the header's "v" and the ops' fields share one rule.
func TestIntegersAreIntegers(t *testing.T) {
	for _, hdr := range []string{
		`{"op":"call","function":"f","timeoutMs":15000.0}`,
		`{"op":"call","function":"f","timeoutMs":1.5e4}`,
		`{"op":"call","function":"f","retries":1E0}`,
		`{"op":"function","name":"f","maxConcurrency":2.0}`,
		`{"op":"call","function":"f","waitForLive":-0.0}`,
	} {
		_, err := ParseDirective("n", code(hdr))
		if err == nil || !strings.Contains(err.Error(), "expected a whole number") {
			t.Errorf("%s: err = %v, want a whole-number error", hdr, err)
		}
	}
	for _, hdr := range []string{`{"op":"call","v":1.0,"function":"f"}`, `{"op":"call","v":1e0,"function":"f"}`, `{"op":"call","v":"1","function":"f"}`} {
		_, err := ParseDirective("n", code(hdr))
		if err == nil || !strings.Contains(err.Error(), `field "v": expected a whole number`) || !strings.Contains(err.Error(), `in node "n"`) {
			t.Errorf("%s: err = %v", hdr, err)
		}
	}
	d, err := ParseDirective("n", code(`{"op":"call","v":1,"function":"f","timeoutMs":15000,"retries":-0}`))
	if err != nil || d.(*CallDirective).TimeoutMs != 15000 {
		t.Fatalf("plain integers: %v %v", d, err)
	}
}

// Every op's parser refuses fields it does not know, echo included.
func TestEveryOpIsStrict(t *testing.T) {
	for _, hdr := range []string{
		`{"op":"function","name":"f","bogus":1}`,
		`{"op":"call","function":"f","bogus":1}`,
		`{"op":"return","bogus":1}`,
		`{"op":"echo","bogus":1}`,
		`{"op":"function","name":"f","params":[{"name":"a","bogus":1}]}`,
	} {
		_, err := ParseDirective("node X", code(hdr))
		if err == nil || !strings.Contains(err.Error(), "unknown field") || !strings.Contains(err.Error(), "bogus") || !strings.Contains(err.Error(), `in node "node X"`) {
			t.Errorf("%s: err = %v", hdr, err)
		}
	}
}

// Header-level errors name the node like field errors do, in ParseDirective and through NodeError
// for a runtime that read the header before it knew the node.
func TestHeaderErrorsNameTheNode(t *testing.T) {
	for _, c := range []string{
		"/* @n8n-fn {\"op\":\"call\"",
		"/* @n8n-fn nope */",
		"/* @n8n-fn {\"op\": */",
		"/* @n8n-fn {\"op\":\"call\"} {} */",
		"/* @n8n-fn {\"v\":1} */",
		"/* @n8n-fn {\"op\":\"dance\"} */",
		"/* @n8n-fn {\"op\":\"call\",\"v\":2} */",
		"/* @n8n-fn {\"op\":\"call\",\"x\":" + strings.Repeat("[", 200) + "} */",
	} {
		_, err := ParseDirective("My node", c)
		if err == nil || !strings.HasPrefix(err.Error(), `invalid n8n-fn directive in node "My node": `) {
			t.Errorf("ParseDirective(%.40q) = %v", c, err)
		}
		_, herr := ParseHeader(c)
		nerr := NodeError("My node", herr)
		if !errors.Is(nerr, ErrDirective) || nerr.Error() != err.Error() {
			t.Errorf("NodeError(ParseHeader(%.40q)) = %v, want %v", c, nerr, err)
		}
	}
	_, herr := ParseHeader("/* @n8n-fn {" + strings.Repeat(" ", 70<<10) + "} */")
	if nerr := NodeError("n", herr); !errors.Is(nerr, ErrLimit) {
		t.Errorf("NodeError drops the limit error: %v", nerr)
	}
	other := errors.New("not a directive error")
	if NodeError("n", other) != other || NodeError("n", nil) != nil {
		t.Error("NodeError changes other errors")
	}
}

// No value reaches an error message beyond a 40-character excerpt marked with its size.
func TestErrorsQuoteOnlyExcerpts(t *testing.T) {
	big := strings.Repeat("x", 10000)
	for _, hdr := range []string{
		`{"op":"call","function":"f","mode":"` + big + `"}`,
		`{"op":"call","function":"f","scope":"` + big + `"}`,
		`{"op":"call","function":"f","resultField":"a.` + big + `"}`,
		`{"op":"call","function":"f","idempotencyKey":"a b` + big + `"}`,
		`{"op":"call","function":"f","timeoutMs":"` + big + `"}`,
		`{"op":"function","name":"f","params":[{"name":"a","type":"` + big + `"}]}`,
		`{"op":"function","name":"f","params":[{"name":"a","type":"number","default":"` + big + `"}]}`,
		`{"op":"` + big + `"}`,
		`{"op":"call","function":"f","` + big + `":1}`,
		`{"op":"call","function":"f"} ` + big,
	} {
		_, err := ParseDirective("n", code(hdr))
		if err == nil {
			t.Errorf("%.60s accepted", hdr)
			continue
		}
		if len(err.Error()) > 600 || !strings.Contains(err.Error(), "bytes)") {
			t.Errorf("%.60s: a %d-byte error without a marked excerpt: %.300s", hdr, len(err.Error()), err)
		}
	}
	fn := &FunctionDirective{Name: "f", Params: []Param{{Name: "n", Type: TypeNumber}, {Name: "b", Type: TypeBoolean}, {Name: "o", Type: TypeObject}}}
	for _, in := range []string{
		fmt.Sprintf(`{"n":%q}`, big), fmt.Sprintf(`{"b":%q}`, big), fmt.Sprintf(`{"o":%q}`, big),
		`[` + big + `]`, `{"n":` + big,
	} {
		_, err := fn.BindParams([]byte(in))
		if err == nil || len(err.Error()) > 600 || !strings.Contains(err.Error(), "bytes)") {
			t.Errorf("BindParams(%.40s...): %.300v", in, err)
		}
	}
	if _, err := ParseFunctionRef("global/" + big); err == nil || len(err.Error()) > 600 {
		t.Errorf("ParseFunctionRef: %.300v", err)
	}
}
