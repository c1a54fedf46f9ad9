package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
)

// unsealCmd gives a running, sealed service one custodian's share.
type unsealCmd struct {
	Share string `json:"share"`
}

func (c *unsealCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Share, "share", "", "the share, as keys split printed it (default: read a line from standard input, which keeps it out of the shell history)")
}

// check reads the share from standard input when no flag gives it.
func (c *unsealCmd) check() error {
	if c.Share != "" {
		return nil
	}
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	c.Share = strings.TrimSpace(line)
	if c.Share == "" {
		return fmt.Errorf("no share: give --share or a line on standard input (%v)", err)
	}
	return nil
}

func (*unsealCmd) serviceOnly() {}

func (c *unsealCmd) do(ctx context.Context, k *call) (any, error) {
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
