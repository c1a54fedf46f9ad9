package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// Review of issue 12: "each subcommand's --help shows its own flags and the
// settings it reads". With a bad value in the environment (one the operator
// is asking help about, typically) --help fails with exit 2 instead: the
// settings are parsed before the flags (commands.go flagSets -> addSettings).
func TestReview12HelpDespiteBadEnvironment(t *testing.T) {
	t.Parallel()
	for _, env := range []string{"PAYPAGE_LIMIT_CARD_PER_DAY=ten", "PAYPAGE_WEBHOOK_ALLOW_PRIVATE=yes"} {
		k, v, _ := strings.Cut(env, "=")
		var out, errb bytes.Buffer
		err := run(context.Background(), []string{"merchant", "add", "--help"}, func(name string) string {
			if name == k {
				return v
			}
			return ""
		}, &out, &errb)
		if err != nil || !strings.Contains(out.String(), "Usage: paypage merchant add") {
			t.Errorf("%s: merchant add --help: %v\n%s", env, err, out.String()+errb.String())
		}
	}
}
