package workflows

import (
	"fmt"
	"testing"
)

// callShapingHeaders are the shaping fields of call headers, one combination per rule of
// parseCallShaping (alone, and several broken at once to pin the order of the problems).
var callShapingHeaders = []string{
	`"paramsField":"a.b"`, `"paramsField":""`, `"paramsField":"_functionCall"`, `"paramsField":"p","paramsWithItem":true,"parseValues":false`,
	`"paramsWithItem":true`, `"parseValues":true`, `"paramsWithItem":false,"parseValues":true`,
	`"resultMode":"append"`, `"resultMode":"field"`, `"resultMode":"field","resultField":"r","skipNull":true`,
	`"resultMode":"none","resultField":"r"`, `"resultMode":"items","resultField":"r"`, `"resultMode":"merge","resultField":"r"`,
	`"resultMode":"replace"`, `"resultField":"r"`, `"paramsField":"p","resultField":"p"`, `"paramsField":"p","resultMode":"merge","resultField":"p"`,
	`"valueField":"a.b"`, `"valueField":""`, `"valueField":"v"`, `"resultMode":"merge","skipNull":true`, `"skipNull":false`,
	`"errorOutput":"all"`, `"errorField":"e"`, `"errorOutput":"error","errorField":"e"`, `"errorOutput":"input","errorField":"x.y"`,
	`"errorOutput":"details","errorField":""`, `"errorOutput":"details","errorField":"e"`, `"errorOutput":"input"`,
	`"paramsField":"_functionCall","parseValues":true,"resultMode":"x","resultField":"_functionCall","valueField":"","skipNull":true,"errorOutput":"zz","errorField":"e"`,
	`"paramsField":"a.b","paramsWithItem":true,"resultMode":"field","valueField":"c.d","errorField":"e"`,
}

// TestParseCallShapingExact pins the whole error (or the effective result mode) of each of
// callShapingHeaders, so a reordering or a lost or doubled problem shows.
func TestParseCallShapingExact(t *testing.T) {
	for i, h := range callShapingHeaders {
		want := callShapingWant[i]
		if want.header != h {
			t.Fatalf("table out of step at %d", i)
		}
		d, err := parseCallHeader(t, `{"op":"call","function":"f",`+h+`}`)
		got := ""
		if err != nil {
			got = err.Error()
		} else {
			got = fmt.Sprintf("ok %s", d.EffectiveResultMode())
		}
		if got != want.result {
			t.Errorf("%s:\n got %s\nwant %s", h, got, want.result)
		}
	}
}

// callShapingWant is what ParseCall gave for callShapingHeaders before parseCallShaping was split.
var callShapingWant = []struct{ header, result string }{
	{"\"paramsField\":\"a.b\"", "invalid n8n-fn directive in node \"n\", field \"paramsField\": \"a.b\" must be one top-level field name (no '.', at most 100 characters)"},
	{"\"paramsField\":\"\"", "invalid n8n-fn directive in node \"n\", field \"paramsField\": must not be empty"},
	{"\"paramsField\":\"_functionCall\"", "invalid n8n-fn directive in node \"n\", field \"paramsField\": \"_functionCall\" is reserved for the call context"},
	{"\"paramsField\":\"p\",\"paramsWithItem\":true,\"parseValues\":false", "ok items"},
	{"\"paramsWithItem\":true", "invalid n8n-fn directive in node \"n\", field \"paramsWithItem\": only applies with \"paramsField\" (the field that holds the params)"},
	{"\"parseValues\":true", "invalid n8n-fn directive in node \"n\", field \"parseValues\": only applies with \"paramsField\" (the field that holds the params)"},
	{"\"paramsWithItem\":false,\"parseValues\":true", "invalid n8n-fn directive in node \"n\": field \"paramsWithItem\": only applies with \"paramsField\" (the field that holds the params); field \"parseValues\": only applies with \"paramsField\" (the field that holds the params)"},
	{"\"resultMode\":\"append\"", "invalid n8n-fn directive in node \"n\", field \"resultMode\": \"append\" is not a result mode (use items, field, merge, replace or none)"},
	{"\"resultMode\":\"field\"", "invalid n8n-fn directive in node \"n\", field \"resultMode\": resultMode \"field\" needs \"resultField\" (the field that gets the result)"},
	{"\"resultMode\":\"field\",\"resultField\":\"r\",\"skipNull\":true", "ok field"},
	{"\"resultMode\":\"none\",\"resultField\":\"r\"", "invalid n8n-fn directive in node \"n\", field \"resultField\": resultMode \"none\" puts no result in a field: remove resultField or use field, merge or replace"},
	{"\"resultMode\":\"items\",\"resultField\":\"r\"", "invalid n8n-fn directive in node \"n\", field \"resultField\": resultMode \"items\" puts no result in a field: remove resultField or use field, merge or replace"},
	{"\"resultMode\":\"merge\",\"resultField\":\"r\"", "ok merge"},
	{"\"resultMode\":\"replace\"", "ok replace"},
	{"\"resultField\":\"r\"", "ok field"},
	{"\"paramsField\":\"p\",\"resultField\":\"p\"", "invalid n8n-fn directive in node \"n\", field \"resultField\": \"p\" is also the paramsField, which is removed from the output"},
	{"\"paramsField\":\"p\",\"resultMode\":\"merge\",\"resultField\":\"p\"", "invalid n8n-fn directive in node \"n\", field \"resultField\": \"p\" is also the paramsField, which is removed from the output"},
	{"\"valueField\":\"a.b\"", "invalid n8n-fn directive in node \"n\", field \"valueField\": \"a.b\" must be one top-level field name (no '.', at most 100 characters)"},
	{"\"valueField\":\"\"", "invalid n8n-fn directive in node \"n\", field \"valueField\": must not be empty"},
	{"\"valueField\":\"v\"", "ok items"},
	{"\"resultMode\":\"merge\",\"skipNull\":true", "invalid n8n-fn directive in node \"n\", field \"skipNull\": only applies with resultMode \"field\" (merge skips a null result anyway)"},
	{"\"skipNull\":false", "invalid n8n-fn directive in node \"n\", field \"skipNull\": only applies with resultMode \"field\" (merge skips a null result anyway)"},
	{"\"errorOutput\":\"all\"", "invalid n8n-fn directive in node \"n\", field \"errorOutput\": \"all\" is not an error output (use error, input or details)"},
	{"\"errorField\":\"e\"", "invalid n8n-fn directive in node \"n\", field \"errorField\": errorOutput \"error\" always writes {\"error\": message}: use errorOutput input or details to name the field"},
	{"\"errorOutput\":\"error\",\"errorField\":\"e\"", "invalid n8n-fn directive in node \"n\", field \"errorField\": errorOutput \"error\" always writes {\"error\": message}: use errorOutput input or details to name the field"},
	{"\"errorOutput\":\"input\",\"errorField\":\"x.y\"", "invalid n8n-fn directive in node \"n\", field \"errorField\": \"x.y\" must be one top-level field name (no '.', at most 100 characters)"},
	{"\"errorOutput\":\"details\",\"errorField\":\"\"", "invalid n8n-fn directive in node \"n\", field \"errorField\": must not be empty"},
	{"\"errorOutput\":\"details\",\"errorField\":\"e\"", "ok items"},
	{"\"errorOutput\":\"input\"", "ok items"},
	{"\"paramsField\":\"_functionCall\",\"parseValues\":true,\"resultMode\":\"x\",\"resultField\":\"_functionCall\",\"valueField\":\"\",\"skipNull\":true,\"errorOutput\":\"zz\",\"errorField\":\"e\"", "invalid n8n-fn directive in node \"n\": field \"paramsField\": \"_functionCall\" is reserved for the call context; field \"resultMode\": \"x\" is not a result mode (use items, field, merge, replace or none); field \"resultField\": \"_functionCall\" is reserved for the call context; field \"resultField\": \"_functionCall\" is also the paramsField, which is removed from the output; field \"valueField\": must not be empty; field \"skipNull\": only applies with resultMode \"field\" (merge skips a null result anyway); field \"errorOutput\": \"zz\" is not an error output (use error, input or details)"},
	{"\"paramsField\":\"a.b\",\"paramsWithItem\":true,\"resultMode\":\"field\",\"valueField\":\"c.d\",\"errorField\":\"e\"", "invalid n8n-fn directive in node \"n\": field \"paramsField\": \"a.b\" must be one top-level field name (no '.', at most 100 characters); field \"resultMode\": resultMode \"field\" needs \"resultField\" (the field that gets the result); field \"valueField\": \"c.d\" must be one top-level field name (no '.', at most 100 characters); field \"errorField\": errorOutput \"error\" always writes {\"error\": message}: use errorOutput input or details to name the field"},
}
