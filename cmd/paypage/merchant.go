package main

import (
	"context"
	"flag"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/paypage/paypage/pkg/account"
	"github.com/paypage/paypage/pkg/egress"
)

// merchantAddCmd adds a shop and prints its secrets once.
type merchantAddCmd struct {
	Name       string `json:"name"`
	WebhookURL string `json:"webhook_url"`
}

func (c *merchantAddCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Name, "name", "", "the shop's `name`, as shoppers see it (required)")
	fs.StringVar(&c.WebhookURL, "webhook-url", "", "the `URL` events are delivered to")
}

func (c *merchantAddCmd) do(ctx context.Context, k *call) (any, error) {
	m, err := k.app.Accounts.AddMerchant(ctx, c.Name, c.WebhookURL)
	if err != nil {
		return nil, err
	}
	k.object = m.ID
	k.concerns(m.ID)
	warnWebhook(ctx, k, c.WebhookURL)
	return m, nil
}

// merchantSetWebhookCmd changes a shop's webhook endpoint, and its signing
// secret with --roll-secret.
type merchantSetWebhookCmd struct {
	ID         string `json:"id"`
	WebhookURL string `json:"webhook_url"`
	RollSecret bool   `json:"roll_secret"`
}

func (c *merchantSetWebhookCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.ID, "id", "", "the merchant's `ID` (required)")
	fs.StringVar(&c.WebhookURL, "webhook-url", "", "the `URL` events are delivered to (empty: none)")
	fs.BoolVar(&c.RollSecret, "roll-secret", false, "also make a new signing secret, printed once")
}

func (c *merchantSetWebhookCmd) check() error {
	return need(c.ID, "id")
}

func (c *merchantSetWebhookCmd) do(ctx context.Context, k *call) (any, error) {
	k.object = c.ID
	k.concerns(c.ID)
	if err := k.app.Accounts.SetWebhookURL(ctx, c.ID, c.WebhookURL); err != nil {
		return nil, err
	}
	warnWebhook(ctx, k, c.WebhookURL)
	res := map[string]string{"id": c.ID, "webhook_url": c.WebhookURL}
	if c.RollSecret {
		k.also = append(k.also, "merchant.roll_webhook_secret")
		secret, err := k.app.Accounts.RollWebhookSecret(ctx, c.ID)
		if err != nil {
			return nil, err
		}
		res["webhook_secret"] = secret
	}
	return res, nil
}

// merchantSetFrameOriginsCmd sets the origins that may frame a shop's pages.
type merchantSetFrameOriginsCmd struct {
	ID      string `json:"id"`
	Origins string `json:"origins"`
}

func (c *merchantSetFrameOriginsCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.ID, "id", "", "the merchant's `ID` (required)")
	fs.StringVar(&c.Origins, "origins", "", "a `LIST` of https origins, comma separated: https://shop.example, https://*.shop.example (empty: none may frame the pages)")
}

func (c *merchantSetFrameOriginsCmd) check() error {
	if err := need(c.ID, "id"); err != nil {
		return err
	}
	_, err := account.ParseFrameOrigins(strings.Split(c.Origins, ","))
	return err
}

func (c *merchantSetFrameOriginsCmd) do(ctx context.Context, k *call) (any, error) {
	k.object = c.ID
	k.concerns(c.ID)
	list, err := k.app.Accounts.SetFrameOrigins(ctx, c.ID, strings.Split(c.Origins, ","))
	if err != nil {
		return nil, err
	}
	return map[string]any{"id": c.ID, "frame_origins": list}, nil
}

// warnWebhook warns when deliveries to a webhook URL would be refused under
// the settings the command runs with (the service's, through its socket):
// the egress guard's checks, on the URL and on the addresses its name has now.
func warnWebhook(ctx context.Context, k *call, raw string) {
	if raw == "" || k.app.Config().WebhookAllowPrivate {
		return
	}
	const hint = "deliveries to it are refused unless the service runs with --webhook-allow-private (PAYPAGE_WEBHOOK_ALLOW_PRIVATE=true)"
	if err := egress.CheckURL(raw, false); err != nil {
		k.warn("%v: %s", err, hint)
		return
	}
	u, _ := url.Parse(raw)
	if _, err := netip.ParseAddr(u.Hostname()); err == nil {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(lctx, "ip", u.Hostname())
	if err != nil {
		k.warn("%s does not resolve (%v): deliveries fail until it does", u.Hostname(), err)
		return
	}
	for _, ip := range ips {
		if err := egress.CheckAddr(ip); err != nil {
			k.warn("%s resolves to %v: %s", u.Hostname(), err, hint)
			return
		}
	}
}
