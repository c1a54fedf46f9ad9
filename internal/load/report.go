package load

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ServeForLoad is how to run the service for a load test: every limit that
// a load from one address meets turned off, and request logs off. These
// settings are for a load test on its own data directory, never for
// production.
const ServeForLoad = "PAYPAGE_LOG_LEVEL=warn paypage serve --limit-client-per-hour 0 --limit-card-per-day 0 " +
	"--limit-merchant-per-minute 0 --limit-global-per-minute 0 --detokenize-per-second 0 --limit-refusals-per-minute 0"

// advice is what to change when an error of a step and status shows.
var advice = []struct {
	step   string // "" for any step
	status int
	code   string // "" for any code
	say    string
}{
	{"submit", 429, "", "the card page refused submissions with 429: the card-testing limits. Every shopper of a load test comes from " +
		"one address and pays one merchant, past what an address may submit in an hour (--limit-client-per-hour, PAYPAGE_LIMIT_CLIENT_PER_HOUR), " +
		"a merchant's pages take in a minute (--limit-merchant-per-minute, PAYPAGE_LIMIT_MERCHANT_PER_MINUTE) and all pages together " +
		"(--limit-global-per-minute, PAYPAGE_LIMIT_GLOBAL_PER_MINUTE); run the service with each of them 0, and --limit-card-per-day 0 " +
		"(PAYPAGE_LIMIT_CARD_PER_DAY) for cards that are not sandbox cards"},
	{"detokenize", 429, "", "detokenize answered 429: the processor's detokenize rate; run the service with --detokenize-per-second 0 " +
		"(PAYPAGE_DETOKENIZE_PER_SECOND=0), or lift this processor's own: paypage processor set-rate --id PRC --rate 0. " +
		"If the answer says too many refused calls, it is --limit-refusals-per-minute 0 (PAYPAGE_LIMIT_REFUSALS_PER_MINUTE=0)"},
	{"", 429, "rate_limited", "the API answered 429: past --limit-refusals-per-minute (PAYPAGE_LIMIT_REFUSALS_PER_MINUTE) refused " +
		"calls from this address, or a rate; fix what was refused (a key), or run with --limit-refusals-per-minute 0"},
	{"", 401, "", "a secret key was refused (401): give the keys \"paypage merchant add\" and \"paypage processor add\" printed for this service's store"},
	{"detokenize", 404, "", "detokenize answered 404: the processor does not serve the tokens' merchant; paypage processor grant --id PRC --merchant MER"},
}

// advise returns the advice that the run's errors call for.
func advise(rep *Report) []string {
	var out []string
	limited := false
	for _, a := range advice {
		for _, key := range sortedKeys(rep.Total.ErrorsBy) {
			if matches(key, a.step, a.status, a.code) {
				out = append(out, a.say)
				limited = limited || a.status == 429
				break
			}
		}
	}
	if limited {
		out = append(out, "run the service for a load test with its limits off, on a data directory of its own (never in production): "+ServeForLoad)
	}
	return out
}

// adviceFor is the advice for a set-up's error, as text to append to it.
func adviceFor(err error) string {
	var f *failure
	if !errors.As(err, &f) {
		return ""
	}
	rep := &Report{Total: Stats{ErrorsBy: map[string]uint64{f.Error(): 1}}}
	if a := advise(rep); len(a) > 0 {
		return "\n" + strings.Join(a, "\n")
	}
	return ""
}

// matches reports whether an error key ("submit 429 state form") is of a
// step, status and code ("" for any step or code).
func matches(key, step string, status int, code string) bool {
	f := strings.Fields(key)
	if len(f) < 2 || f[1] != fmt.Sprint(status) {
		return false
	}
	if step != "" && f[0] != step {
		return false
	}
	return code == "" || (len(f) > 2 && f[2] == code)
}

// WriteJSON writes the report as one JSON document.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// WriteText writes the report as a table for people.
func (rep *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "%s: %d concurrent clients, %.1f s measured after %.0f s of warm-up, on %s\n",
		rep.Scenario, rep.Concurrency, rep.Seconds, rep.WarmupSec, rep.Target)
	fmt.Fprintf(w, "%-12s %9s %9s %9s %8s %8s %8s %8s %8s %8s %7s\n", "", "ops", "ops/s", "req/s", "mean ms", "p50", "p90", "p99", "p99.9", "max", "errors")
	row := func(name string, s Stats) {
		fmt.Fprintf(w, "%-12s %9d %9.1f %9.1f %8.2f %8.2f %8.2f %8.2f %8.2f %8.2f %7d\n",
			name, s.Ops, s.PerSecond, s.ReqPerSec, s.MeanMs, s.P50Ms, s.P90Ms, s.P99Ms, s.P999Ms, s.MaxMs, s.Errors)
	}
	for _, k := range sortedKeys(rep.Kinds) {
		row(k, rep.Kinds[k])
	}
	row("all", rep.Total)
	if rep.FloorRate > 0 {
		fmt.Fprintf(w, "share of the floor (%.0f/s in the same run): %.1f%%\n", rep.FloorRate, 100*rep.FloorShare)
	}
	if s := rep.Server; s != nil {
		fmt.Fprintf(w, "server: %.2f CPU cores, %.0f µs of CPU an operation; resident memory %.1f MB at the start, %.1f MB at the end, %.1f MB at most, %+.2f MB a minute; the Go runtime's %.1f MB at most\n",
			s.CPUCores, s.CPUPerOpMicros, s.ResidentStartMB, s.ResidentEndMB, s.ResidentMaxMB, s.ResidentSlopeMBPerMin, s.GoSysMaxMB)
	}
	fmt.Fprintf(w, "load tool: %.1f s of CPU (set-up and warm-up included)\n", rep.LoaderCPUSec)
	if len(rep.Total.ErrorsBy) > 0 {
		fmt.Fprintln(w, "errors by step, HTTP status and code:")
		for _, k := range sortedKeys(rep.Total.ErrorsBy) {
			fmt.Fprintf(w, "  %-40s %d\n", k, rep.Total.ErrorsBy[k])
		}
	}
	for _, a := range rep.Advice {
		fmt.Fprintf(w, "advice: %s\n", a)
	}
}
