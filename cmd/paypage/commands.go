package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/paypage/paypage/pkg/account"
)

// The registry: every subcommand, one line each. To add one, write a file
// with its type (see merchant_add.go for an operator command, serve.go for
// one that runs alone) and add its line here.
var commands = []entry{
	{name: "serve", summary: "run the service", reads: settings, new: func() command { return &serveCmd{} }},
	{name: "demo", args: "[--shop-addr 127.0.0.1:8081]", summary: "try it: the service (a temporary embedded store, the sandboxes) and a demo shop on another port that pays through it and shows the verified webhook",
		reads: []*setting{settingNamed("log-level")}, new: func() command { return &demoCmd{} }},

	{name: "merchant add", args: "--name N [--webhook-url U]", summary: `add a shop; prints {"id", "secret_key", "webhook_secret"} once`, audit: "merchant.add",
		reads: []*setting{settingNamed("webhook-allow-private")}, new: func() command { return &merchantAddCmd{} }},
	{name: "merchant set-webhook", args: "--id ID --webhook-url U [--roll-secret]", summary: "change (or, empty, turn off) a shop's webhook endpoint; --roll-secret prints a new signing secret once", audit: "merchant.set_webhook",
		reads: []*setting{settingNamed("webhook-allow-private")}, new: func() command { return &merchantSetWebhookCmd{} }},
	{name: "merchant set-frame-origins", args: "--id ID --origins O,...", summary: "the https origins that may show the shop's payment pages in a frame (empty: none)", audit: "merchant.set_frame_origins",
		new: func() command { return &merchantSetFrameOriginsCmd{} }},

	{name: "merchant roll-key", args: "--id ID [--old-expires-in 24h]", summary: "a new secret key, printed once; the old ones stay valid until then (0s: they stop at once)", audit: "merchant.roll_key",
		new: func() command { return &rollKeyCmd{kind: account.KindMerchant} }},
	{name: "merchant disable", args: "--id ID", summary: "refuse every key of a shop at once (401)", audit: "merchant.disable",
		new: func() command { return &disableCmd{kind: account.KindMerchant, disable: true} }},
	{name: "merchant enable", args: "--id ID", summary: "accept a disabled shop's keys again", audit: "merchant.enable",
		new: func() command { return &disableCmd{kind: account.KindMerchant} }},
	{name: "merchant list", summary: "the shops, their keys' hints and when each was last used (never the keys)",
		new: func() command { return &listCmd{kind: account.KindMerchant} }},

	{name: "processor add", args: "--name N [--merchants M,...] [--rate N]", summary: `add a processor credential serving those merchants; prints {"id", "secret_key"} once`, audit: "processor.add",
		reads: []*setting{settingNamed("detokenize-per-second")}, new: func() command { return &processorAddCmd{} }},
	{name: "processor grant", args: "--id ID --merchant M", summary: "let a processor detokenize a merchant's cards", audit: "processor.grant",
		new: func() command { return &processorGrantCmd{} }},
	{name: "processor revoke", args: "--id ID --merchant M", summary: "stop a processor detokenizing a merchant's cards (404 from then on)", audit: "processor.revoke",
		new: func() command { return &processorGrantCmd{revoke: true} }},
	{name: "processor set-rate", args: "--id ID --rate N|default", summary: "a processor's own detokenize calls a second (0: no limit; default: --detokenize-per-second)", audit: "processor.set_rate",
		reads: []*setting{settingNamed("detokenize-per-second")}, new: func() command { return &processorSetRateCmd{} }},
	{name: "processor roll-key", args: "--id ID [--old-expires-in 24h]", summary: "a new secret key, printed once; the old ones stay valid until then (0s: they stop at once)", audit: "processor.roll_key",
		new: func() command { return &rollKeyCmd{kind: account.KindProcessor} }},
	{name: "processor disable", args: "--id ID", summary: "refuse every key of a processor at once (401)", audit: "processor.disable",
		new: func() command { return &disableCmd{kind: account.KindProcessor, disable: true} }},
	{name: "processor enable", args: "--id ID", summary: "accept a disabled processor's keys again", audit: "processor.enable",
		new: func() command { return &disableCmd{kind: account.KindProcessor} }},
	{name: "processor list", summary: "the processors, the merchants each serves, their keys' hints and last use (never the keys)",
		new: func() command { return &listCmd{kind: account.KindProcessor} }},

	{name: "keys status", summary: "the key versions: per version, the records of every sealed kind that use it, and its seal count", new: func() command { return &keysStatusCmd{} }},
	{name: "keys rotate", summary: "add a key version (data, fingerprint and CSRF keys); every replica seals under it within seconds", audit: "keys.rotate", new: func() command { return &keysRotateCmd{} }},
	{name: "keys reencrypt", summary: "move every sealed record to the active key version (resumable); CVV holds expire instead", audit: "keys.reencrypt", new: func() command { return &keysReencryptCmd{} }},
	{name: "keys retire", args: "--version N", summary: "destroy a key version nothing uses any more (about 20 s: two settle times): what it sealed never opens again", audit: "keys.retire",
		new: func() command { return &keysRetireCmd{} }},
	{name: "keys split", args: "--shares N --threshold K", summary: "split the master key into N custodians' shares, any K of which unseal; printed once", audit: "keys.split",
		new: func() command { return &keysSplitCmd{} }},
	{name: "unseal", args: "[--share S] [--reset]", summary: "give a sealed service one custodian's share (or on standard input); at the threshold it unseals; --reset drops the shares given so far", audit: "keys.unseal",
		reads: []*setting{settingNamed("unseal-shares")}, new: func() command { return &unsealCmd{} }},
	{name: "seal", summary: "wipe the master key from a running service's memory: it answers 503 until unsealed", audit: "keys.seal",
		new: func() command { return &sealCmd{} }},
	{name: "csp-reports", args: "[--after ID] [--limit N]", summary: "the Content-Security-Policy violations browsers reported on the pages (directive, blocked domain, page, how many in a minute), oldest first; beside a running service, with the counts so far",
		new: func() command { return &cspReportsCmd{} }},
	{name: "verify-page", args: "URL", summary: "fetch a live payment page and its assets; name each difference from the page manifest (exit 1 if any)",
		reads: []*setting{}, new: func() command { return &verifyPageCmd{} }},
	{name: "keys rewrap", args: "--new-master-key-file F", summary: "wrap the data keys under a new master key; then give every replica the new key (its key file: it picks it up); keys rotate waits for them", audit: "keys.rewrap",
		new: func() command { return &keysRewrapCmd{} }},

	{name: "audit list", args: "[--merchant ID] [--after ID] [--limit N]", summary: "the audit trail, oldest first", new: func() command { return &auditListCmd{} }},
	{name: "audit export", args: "[--out FILE] [--batch N] [--mark]", summary: "write the records not exported yet as JSON lines (appended to FILE, or stdout), sync them and mark them exported: only exported records are ever trimmed. To a pipe or a terminal, which cannot be synced, the mark stays (it says how to move it) unless --mark",
		new: func() command { return &auditExportCmd{} }},
	{name: "audit unexported", args: "[--after ID] [--limit N]", summary: "the records after the export mark (or after ID), oldest first, and the mark (what audit export reads)",
		new: func() command { return &auditUnexportedCmd{} }},
	{name: "audit mark-exported", args: "--after ID --through ID", summary: "move the export mark from ID to ID (what audit export does once its output is safe), then trim to --audit-max-records", audit: "audit.export",
		reads: []*setting{settingNamed("audit-max-records")}, new: func() command { return &auditMarkExportedCmd{} }},

	{name: "events list", args: "[--merchant ID] [--after EVT] [--limit N]", summary: "webhook events with their delivery state", new: func() command { return &eventsListCmd{} }},
	{name: "events resend", args: "--id EVT", summary: "queue an event for delivery again (same ID)", audit: "events.resend", new: func() command { return &eventsResendCmd{} }},

	{name: "load", args: "[--scenario S] [--concurrency N] [--duration D] [--merchant FILE] [--processor FILE]", summary: "drive a running service on this machine with load and report throughput, latency, errors and the service's CPU and memory (starts nothing itself)",
		reads: []*setting{settingNamed("metrics-addr"), settingNamed("processor-addr")}, new: func() command { return &loadCmd{} }},
}

// entryNamed returns the registry's entry of a command.
func entryNamed(name string) entry {
	for _, e := range commands {
		if e.name == name {
			return e
		}
	}
	panic("no command " + name)
}

// storeSettings are what every operator command reads: where the store and
// its keys are, and how much to log.
var storeSettings = []*setting{
	settingNamed("data"), settingNamed("store"), settingNamed("store-ca"), settingNamed("master-key-file"), settingNamed("addr"), settingNamed("log-level"),
}

// entry is one line of the registry.
type entry struct {
	name    string     // "group command", or one word
	args    string     // its flags in short, for the command list
	summary string     // one line
	audit   string     // the audit action an operator command records; "" for one that only reads
	reads   []*setting // settings it reads beside storeSettings (serve: all of them)
	new     func() command
}

// command is one subcommand. Its flags fill its fields.
type command interface {
	flags(fs *flag.FlagSet)
}

// runner is a command that runs in this process alone (serve).
type runner interface {
	command
	run(ctx context.Context, m *Main) error
}

// operation is an operator command: it acts on the store and the keys,
// and its answer is printed as JSON. It runs in the service that holds the
// store, reached through the operator socket, or, when none runs, in this
// process on a store it opens. Its exported fields are its arguments: they
// travel to the service as JSON.
type operation interface {
	command
	do(ctx context.Context, c *call) (any, error)
}

// serviceOnly is an operation that only a running service can carry out
// (unseal and seal change the service's memory, not the store): without a
// service on the socket it fails instead of opening the store.
type serviceOnly interface {
	operation
	serviceOnly()
}

// positional is a command that takes arguments after its flags (verify-page URL).
type positional interface {
	setArgs(args []string) error
}

// checker is an operation whose arguments are checked before it is sent,
// and again by the service that receives them.
type checker interface {
	check() error
}

// prompter is an operation that reads what its flags left out from the
// operator's standard input (a share): in the operator's process only,
// before check.
type prompter interface {
	prompt(stdin io.Reader) error
}

// need returns an error naming a required flag left empty.
func need(value, flag string) error {
	if value == "" {
		return fmt.Errorf("--%s is required", flag)
	}
	return nil
}

// settingsRead lists the settings a command's help shows, in the order of
// the settings table.
func (e entry) settingsRead() []*setting {
	want := map[*setting]bool{}
	for _, s := range append(append([]*setting{}, storeSettings...), e.reads...) {
		want[s] = true
	}
	var out []*setting
	for _, s := range settings {
		if want[s] {
			out = append(out, s)
		}
	}
	return out
}

// usage is the command line in short: "paypage merchant add --name N ...".
func (e entry) usage() string { return strings.TrimSpace("paypage " + e.name + " " + e.args) }

// group returns the first word of the name.
func (e entry) group() string { g, _, _ := strings.Cut(e.name, " "); return g }

// lookup finds the entry a command line names and returns the rest of it.
// With no match it returns the group named, if any.
func lookup(args []string) (e *entry, group string, rest []string) {
	if len(args) == 0 {
		return nil, "", nil
	}
	for i := range commands {
		c := &commands[i]
		words := strings.Fields(c.name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == c.name {
			return c, c.group(), args[len(words):]
		}
	}
	for _, c := range commands {
		if c.group() == args[0] {
			return nil, args[0], args[1:]
		}
	}
	return nil, "", args
}

func isHelp(a string) bool { return a == "-h" || a == "-help" || a == "--help" || a == "help" }

// printCommands lists the commands (of one group, or all) with their summaries.
func printCommands(w io.Writer, group string) {
	for _, c := range commands {
		if group == "" || c.group() == group {
			fmt.Fprintf(w, "  %s\n      %s\n", c.usage(), c.summary)
		}
	}
}

const intro = `paypage: a hosted payment page and card vault

Usage: paypage <command> [flags]

Commands:
`

const outro = `
Every command reads its settings as flags or PAYPAGE_* environment variables
(a flag wins); "paypage <command> --help" shows a command's flags and the
settings it reads. An operator command goes through the running service's
socket in the data directory when one answers there, and otherwise opens the
store itself.
`

// printUsage writes the whole command list.
func printUsage(w io.Writer) {
	fmt.Fprint(w, intro)
	printCommands(w, "")
	fmt.Fprint(w, outro)
	fmt.Fprintln(w, "\nSettings:")
	printSettings(w, settings)
}

// printGroup writes one group's commands.
func printGroup(w io.Writer, group string) {
	fmt.Fprintf(w, "Usage: paypage %s <command> [flags]\n\nCommands:\n", group)
	printCommands(w, group)
	fmt.Fprintf(w, "\nRun \"paypage %s <command> --help\" for its flags.\n", group)
}

// flagSets builds a command's flag set: its own flags, then every setting.
// own holds its own flags alone, for help; bad, the environment's bad
// values, which matter only once the flags are parsed and help is not asked.
func (e entry) flagSets(cmd command, c *Config, getenv func(string) string) (fs, own *flag.FlagSet, bad envErrors) {
	own = flag.NewFlagSet("paypage "+e.name, flag.ContinueOnError)
	cmd.flags(own)
	fs = flag.NewFlagSet("paypage "+e.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	own.VisitAll(func(f *flag.Flag) { fs.Var(f.Value, f.Name, f.Usage) })
	return fs, own, addSettings(fs, c, getenv)
}

// printHelp writes one command's help: what it does, its flags and the
// settings it reads.
func (e entry) printHelp(w io.Writer, own *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: %s\n\n%s.\n", e.usage(), upperFirst(e.summary))
	var names []string
	own.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	if len(names) > 0 {
		fmt.Fprintln(w, "\nFlags:")
		sort.Strings(names)
		for _, n := range names {
			f := own.Lookup(n)
			arg, usage := flag.UnquoteUsage(f)
			if arg != "" {
				arg = " " + arg
			}
			def := ""
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
				def = " (default " + f.DefValue + ")"
			}
			fmt.Fprintf(w, "  --%s%s\n      %s%s\n", n, arg, usage, def)
		}
	}
	fmt.Fprintln(w, "\nSettings it reads (flag or environment; a flag wins):")
	printSettings(w, e.settingsRead())
	if _, ok := e.new().(operation); ok {
		fmt.Fprintln(w, "\nIt goes through the running service's socket (--data/paypage.sock) when one\nanswers there, and otherwise opens the store itself. It prints JSON.")
	}
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
