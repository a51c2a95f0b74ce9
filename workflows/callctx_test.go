package workflows

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func signer(t *testing.T, secret string) *Signer {
	t.Helper()
	s, err := NewSigner([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sampleContext() *CallContext {
	return &CallContext{
		CallID: "c2", ReplyKey: "n8nfn:{global/add}:reply:t1", Function: "global/add", EntryID: "1700000000000-0",
		Deadline: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli(), Depth: 2,
		Stack: []CallFrame{{CallID: "c1", Function: "wf1/outer"}},
	}
}

func TestCallContextSignVerify(t *testing.T) {
	s := signer(t, "0123456789abcdef0123")
	now := time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC)
	c := sampleContext()
	c.Sign(s)
	if err := c.Verify(s, now); err != nil {
		t.Fatal(err)
	}
	// survives the trip through an item's json
	item, err := WithContext([]byte(`{"a":1,"_functionCall":{"old":true}}`), c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ContextFromItem(item)
	if err != nil || back == nil {
		t.Fatalf("%v %v", back, err)
	}
	if err := back.Verify(s, now); err != nil {
		t.Fatalf("after round trip: %v", err)
	}
	if string(WithoutContext(item)) != `{"a":1}` {
		t.Fatalf("strip: %s", WithoutContext(item))
	}

	tamper := []func(c *CallContext){
		func(c *CallContext) { c.ReplyKey = "n8nfn:evil" },
		func(c *CallContext) { c.Deadline++ },
		func(c *CallContext) { c.Depth = 1; c.Stack = nil },
		func(c *CallContext) { c.Stack[0].Function = "global/other" },
		func(c *CallContext) { c.CallID = "c3" },
	}
	for i, mod := range tamper {
		cc := *back
		cc.Stack = append([]CallFrame(nil), back.Stack...)
		mod(&cc)
		if err := cc.Verify(s, now); !errors.Is(err, ErrTampered) {
			t.Errorf("tamper %d: want ErrTampered, got %v", i, err)
		}
	}
	if err := back.Verify(signer(t, "another-secret-of-16+"), now); !errors.Is(err, ErrWrongSecret) {
		t.Errorf("wrong secret: %v", err)
	}
	if err := back.Verify(s, time.UnixMilli(back.Deadline+1500)); !errors.Is(err, ErrExpired) || !strings.Contains(err.Error(), "1.5s") {
		t.Errorf("expired: %v", err)
	}
	if err := back.Verify(s, time.Time{}); err != nil {
		t.Errorf("zero now skips the deadline: %v", err)
	}
	unsigned := *back
	unsigned.Sig = ""
	if err := unsigned.Verify(s, now); !errors.Is(err, ErrUnsigned) {
		t.Errorf("unsigned: %v", err)
	}
	unsigned.Sig = "v1.x"
	if err := unsigned.Verify(s, now); !errors.Is(err, ErrMalformedSig) {
		t.Errorf("malformed: %v", err)
	}
}

func TestCallRefSignVerify(t *testing.T) {
	s := signer(t, strings.Repeat("k", 32))
	r := &CallRef{Function: "global/add", EntryID: "1-0", CallID: "abc", Dispatch: 1, Exp: 2_000_000_000_000}
	r.Sign(s)
	body, _ := json.Marshal(r)
	// as posted, and as n8n's Webhook node hands it to the next node
	webhookItem := `{"headers":{"content-type":"application/json"},"params":{},"query":{},"body":` + string(body) + `,"webhookUrl":"http://x","executionMode":"production"}`
	for _, in := range []string{string(body), webhookItem} {
		got, err := ParseCallRef([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		if err := got.Verify(s, time.UnixMilli(1_999_999_999_999)); err != nil {
			t.Fatal(err)
		}
	}
	forged := *r
	forged.EntryID = "2-0"
	if err := forged.Verify(s, time.Time{}); !errors.Is(err, ErrTampered) {
		t.Errorf("forged: %v", err)
	}
	// The dispatch number is signed: a reference cannot be turned into one of a later dispatch.
	redispatched := *r
	redispatched.Dispatch = 2
	if err := redispatched.Verify(s, time.Time{}); !errors.Is(err, ErrTampered) {
		t.Errorf("dispatch number changed: %v", err)
	}
	if err := r.Verify(s, time.UnixMilli(r.Exp+1)); !errors.Is(err, ErrExpired) {
		t.Errorf("expired: %v", err)
	}
	for _, bad := range []string{`[]`, `{"function":"global/add","entryId":"1-0","callId":"abc","exp":1,"sig":"x","extra":1}`, `{"function":"global/add"}`,
		`{"function":"global/add","entryId":"1-0","callId":"abc","exp":1,"sig":"x"}`} {
		if _, err := ParseCallRef([]byte(bad)); !errors.Is(err, ErrMalformedSig) {
			t.Errorf("%s: %v", bad, err)
		}
	}
	// a context signature does not verify as a reference (domain separation)
	c := &CallContext{CallID: "abc", Function: "global/add", EntryID: "1-0", Deadline: r.Exp, Depth: 1}
	c.Sign(s)
	r2 := *r
	r2.Sig = c.Sig
	if err := r2.Verify(s, time.Time{}); !errors.Is(err, ErrTampered) {
		t.Errorf("cross-type signature accepted: %v", err)
	}
}

func TestNewSignerRejectsShortSecret(t *testing.T) {
	if _, err := NewSigner([]byte("short")); !errors.Is(err, ErrWeakSecret) {
		t.Fatal(err)
	}
}

func TestCheckDepth(t *testing.T) {
	if err := CheckDepth(nil, FunctionRef{ScopeGlobal, "fact"}, 3); err != nil {
		t.Fatal(err)
	}
	parent := (*CallContext)(nil)
	fact := FunctionRef{ScopeGlobal, "fact"}
	var err error
	for i := 0; i < 5; i++ {
		if err = CheckDepth(parent, fact, 3); err != nil {
			break
		}
		depth, stack := ChildChain(parent)
		parent = &CallContext{CallID: "c", Function: fact.String(), Depth: depth, Stack: stack}
	}
	if !errors.Is(err, ErrRecursion) || !strings.Contains(err.Error(), "fact -> fact -> fact -> fact") || !strings.Contains(err.Error(), "limit is 3") {
		t.Fatalf("got %v", err)
	}
	if parent.Depth != 3 || len(parent.Stack) != 2 {
		t.Fatalf("depth %d stack %d", parent.Depth, len(parent.Stack))
	}
	local := FunctionRef{"wf7", "g"}
	if local.Display() != "g (workflow wf7)" {
		t.Fatal(local.Display())
	}
}

func TestParseFunctionRef(t *testing.T) {
	r, err := ParseFunctionRef("wf1/add.v2")
	if err != nil || r != (FunctionRef{"wf1", "add.v2"}) || r.String() != "wf1/add.v2" {
		t.Fatal(r, err)
	}
	for _, bad := range []string{"", "add", "/add", "global/", "a b/add", "global/a/b"} {
		if _, err := ParseFunctionRef(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestContextFromItem(t *testing.T) {
	if c, err := ContextFromItem([]byte(`{"a":1}`)); c != nil || err != nil {
		t.Fatal(c, err)
	}
	for _, bad := range []string{`{"_functionCall":"x"}`, `{"_functionCall":{"callId":"a"}}`, `{"_functionCall":{"callId":"a","function":"global/f","bogus":1}}`} {
		if _, err := ContextFromItem([]byte(bad)); !errors.Is(err, ErrBadContext) {
			t.Errorf("%s: %v", bad, err)
		}
	}
	got, err := WithContext([]byte(`{}`), &CallContext{CallID: "a"})
	if err != nil || !json.Valid(got) || !strings.HasPrefix(string(got), `{"_functionCall":{"callId":"a"`) {
		t.Fatalf("%s %v", got, err)
	}
}

func BenchmarkCallContextVerify(b *testing.B) {
	s, _ := NewSigner([]byte("0123456789abcdef0123"))
	c := sampleContext()
	c.Sign(s)
	now := time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC)
	for b.Loop() {
		if err := c.Verify(s, now); err != nil {
			b.Fatal(err)
		}
	}
}
