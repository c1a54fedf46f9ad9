package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// unsealCmd gives a running, sealed service one custodian's share, or
// drops the shares given so far (--reset).
type unsealCmd struct {
	Share string `json:"share"`
	Reset bool   `json:"reset,omitempty"`
}

func (c *unsealCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Share, "share", "", "the share, as keys split printed it (default: read a line from standard input, which keeps it out of the shell history)")
	fs.BoolVar(&c.Reset, "reset", false, "drop the shares given so far (custodians of another split, say): unsealing starts again")
}

// prompt reads the share from standard input when no flag gives it. It
// runs in the operator's process only, never in the service.
func (c *unsealCmd) prompt(stdin io.Reader) error {
	if c.Share != "" || c.Reset {
		return nil
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	c.Share = strings.TrimSpace(line)
	if c.Share == "" {
		return fmt.Errorf("no share: give --share or a line on standard input (%v)", err)
	}
	return nil
}

// check runs on both sides of the socket: a share, or --reset, not both.
func (c *unsealCmd) check() error {
	switch {
	case c.Reset && c.Share != "":
		return errors.New("--reset takes no share")
	case !c.Reset && c.Share == "":
		return errors.New("no share: give --share or a line on standard input")
	}
	return nil
}

func (*unsealCmd) serviceOnly() {}

func (c *unsealCmd) do(ctx context.Context, k *call) (any, error) {
	if c.Reset {
		k.object = "reset"
		return k.app.ResetUnseal(), nil
	}
	p, err := k.app.Unseal(ctx, c.Share)
	k.object = fmt.Sprintf("%d of %d shares", p.Have, p.Threshold)
	if err == nil && !p.Sealed {
		k.object = "unsealed"
	}
	return p, err
}

// sealCmd wipes the master key from a running service's memory.
type sealCmd struct{}

func (*sealCmd) flags(*flag.FlagSet) {}

func (*sealCmd) serviceOnly() {}

func (*sealCmd) do(_ context.Context, k *call) (any, error) {
	return k.app.Seal(), nil
}
