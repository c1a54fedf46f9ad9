// Command paypage is the hosted payment page and card vault: one binary with
// the service and the operator's subcommands. "paypage help" lists them; the
// registry is in commands.go, one type per subcommand in the files beside it.
//
// Every subcommand reads the same settings as flags or PAYPAGE_* variables
// (config.go).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "paypage:", err)
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is a command line that names no command, or bad flags: exit 2.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// Main is one run of the binary: where it writes, what it reads, and the
// settings of the command it runs.
type Main struct {
	Stdin          io.Reader // nil: os.Stdin
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Config         Config
	Log            *slog.Logger
}

// run runs a command line; main and the tests call it. Help is not an error.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	m := &Main{Stdout: stdout, Stderr: stderr, Getenv: getenv}
	return m.Run(ctx, args)
}

// Run finds the command args name, parses its flags and settings, and runs it.
// Help (help, -h, --help, at any level) prints to stdout and touches nothing.
func (m *Main) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		printUsage(m.Stderr)
		return usagef("no command given")
	}
	if isHelp(args[0]) {
		if args[0] == "help" && len(args) > 1 {
			return m.Run(ctx, append(args[1:], "--help"))
		}
		printUsage(m.Stdout)
		return nil
	}
	e, group, rest := lookup(args)
	if e == nil {
		if group == "" {
			printUsage(m.Stderr)
			return usagef("unknown command %q", args[0])
		}
		if len(rest) > 0 && isHelp(rest[0]) {
			printGroup(m.Stdout, group)
			return nil
		}
		printGroup(m.Stderr, group)
		if len(rest) == 0 {
			return usagef("%s needs a command", group)
		}
		return usagef("unknown command %q", group+" "+rest[0])
	}
	cmd := e.new()
	fs, own, bad := e.flagSets(cmd, &m.Config, m.Getenv)
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			e.printHelp(m.Stdout, own)
			return nil
		}
		fmt.Fprintf(m.Stderr, "Run \"paypage %s --help\" for its flags.\n", e.name)
		return usagef("%v", err)
	}
	if err := bad.unless(fs); err != nil {
		return usagef("%v", err)
	}
	if p, ok := cmd.(positional); ok {
		if err := p.setArgs(fs.Args()); err != nil {
			return usagef("%s: %v", e.name, err)
		}
	} else if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q", e.name, fs.Arg(0))
	}
	finishConfig(&m.Config, m.Getenv)
	m.Log = newLogger(m.Stderr, m.Config.LogLevel)
	switch c := cmd.(type) {
	case runner:
		return c.run(ctx, m)
	case operation:
		if p, ok := c.(prompter); ok {
			if err := p.prompt(m.stdin()); err != nil {
				return usagef("%s: %v", e.name, err)
			}
		}
		if ch, ok := c.(checker); ok {
			if err := ch.check(); err != nil {
				return usagef("%s: %v", e.name, err)
			}
		}
		return m.operate(ctx, *e, c)
	}
	panic("command " + e.name + " neither runs nor operates")
}

func (m *Main) stdin() io.Reader {
	if m.Stdin == nil {
		return os.Stdin
	}
	return m.Stdin
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}
