package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/paypage/paypage/pkg/card"
	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/store/redis/redistest"
	"github.com/paypage/paypage/pkg/vault"
)

// shortTiming is the production timing with a lease of two seconds and a
// call deadline of one, so a test can outlast both.
var shortTiming = func() payment.Timing {
	t := payment.DefaultTiming
	t.Lease, t.CallTimeout, t.AskAgain = 2*time.Second, time.Second, []time.Duration{time.Second}
	return t
}()

// TestSlowProcessorCapturesOnce: the sandbox card 4000 0000 0000 0267 is
// approved 40 seconds after it is asked, past the call's deadline and the
// lease. The attempt stays in flight; the reconciler asks again under the
// same ID ("no answer yet" is an unknown, not a decline) until the approval
// is there, and the session is captured once.
func TestSlowProcessorCapturesOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, o envOpts) {
		o.timing = shortTiming
		e := newEnv(t, o)
		id := e.session(map[string]any{"locale": "en"})["id"].(string)
		b := e.browser()
		p := b.pay(id, "4000 0000 0000 0267", "981")
		if p.status != 503 || !strings.Contains(p.body, "Processing your payment") {
			t.Fatalf("slow answer: %d\n%s", p.status, p.body)
		}
		for i := 0; i < 5; i++ { // past the lease, several asks: still unknown
			e.clock.Advance(2 * time.Second)
			e.reconcile()
		}
		if st, pay := sessionState(t, e, id); st != "open" || pay["status"] != "processing" || len(pay["attempts"].([]any)) != 0 {
			t.Fatalf("an unknown answer ended the attempt: %s %v", st, pay)
		}
		e.clock.Advance(40 * time.Second)
		e.reconcile()
		st, pay := sessionState(t, e, id)
		if st != "complete" || pay["status"] != "succeeded" || len(pay["attempts"].([]any)) != 1 {
			t.Fatalf("after the approval: %s %v", st, pay)
		}
		if n := countKind(t, e, "sbx_auth"); n != 1 {
			t.Fatalf("%d authorizations", n)
		}
		e.reconcile()
		if ev := eventTypes(t, e); ev["payment.succeeded"] != 1 || len(ev) != 1 {
			t.Fatalf("events %v", ev)
		}
	})
}

var reCmdStat = regexp.MustCompile(`cmdstat_([a-z|]+):calls=(\d+)`)

// commandStats reads Redis's count of calls per command.
func commandStats(t *testing.T, c *goredis.Client) map[string]int {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, m := range reCmdStat.FindAllStringSubmatch(info, -1) {
		out[m[1]], _ = strconv.Atoi(m[2])
	}
	return out
}

// TestIdleCostsRedisAlmostNothing: an idle replica reads the due index and
// nothing else, whatever the number of records stored: no SCAN, no KEYS,
// and the same few commands a second with 20 or 20,000 records.
func TestIdleCostsRedisAlmostNothing(t *testing.T) {
	srv := redistest.Start(t)
	e := newEnv(t, envOpts{store: srv.URL(), poll: time.Second})
	// Some real work first: paid, declined and expired sessions, events.
	for _, n := range []string{"4242 4242 4242 4242", "4000 0000 0000 0002"} {
		id := e.session(nil)["id"].(string)
		b := e.browser()
		b.follow(b.pay(id, n, "981"))
	}
	e.session(map[string]any{"expires_in": 300})
	e.clock.Advance(10 * time.Minute)
	e.reconcile()
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer c.Close()
	idle := func() (map[string]int, float64) {
		t.Helper()
		time.Sleep(500 * time.Millisecond) // let the last deliveries settle
		if err := c.ConfigResetStat(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		time.Sleep(4 * time.Second)
		stats := commandStats(t, c)
		secs := time.Since(start).Seconds()
		total := 0
		for cmd, n := range stats {
			if cmd != "info" && cmd != "config|resetstat" {
				total += n
			}
		}
		return stats, float64(total) / secs
	}
	small, smallRate := idle()
	// Twenty thousand more cards, sealed in the vault (PAYPAGE_IDLE_CARDS=1000000
	// for the README's figure).
	cards := 20000
	if n, err := strconv.Atoi(os.Getenv("PAYPAGE_IDLE_CARDS")); err == nil && n > 0 {
		cards = n
	}
	sealCards(t, e, cards)
	if n, err := c.DBSize(context.Background()).Result(); err != nil || n < int64(cards) {
		t.Fatalf("%d keys in Redis, want at least %d cards: %v", n, cards, err)
	}
	large, largeRate := idle()
	for _, stats := range []map[string]int{small, large} {
		for cmd := range stats {
			if cmd == "scan" || cmd == "keys" {
				t.Fatalf("an idle replica issued %s: %v", cmd, stats)
			}
		}
	}
	t.Logf("idle: %.1f commands/s with few records, %.1f with %d cards more (%v)", smallRate, largeRate, cards, large)
	// One due-index read a kind a second, and the keyring's version every few
	// seconds: a few, and the same whatever is stored.
	if smallRate > 8 || largeRate > 8 || largeRate > smallRate+1 {
		t.Fatalf("idle replica issues %.1f and %.1f commands a second, want a few, the same with more records", smallRate, largeRate)
	}
}

// TestGetsChangeNothing walks every GET route the server answers, on
// sessions in every state (open, paid, at the bank, with a QR in flight,
// expired) and on the sandbox pages, and checks that Redis's dataset is the
// same afterwards: a GET (a prefetch, an <img>, a reload) never moves a
// payment.
func TestGetsChangeNothing(t *testing.T) {
	srv := redistest.Start(t)
	e := newEnv(t, envOpts{store: srv.URL(), noReconciler: true})
	b := e.browser()
	open := e.session(nil)["id"].(string)
	paid := e.session(nil)["id"].(string)
	b.follow(b.pay(paid, "4242 4242 4242 4242", "981"))
	atBank := e.session(nil)["id"].(string)
	ch := b.pay(atBank, "4000 0000 0000 3220", "981")
	acs, _ := ch.form(0)
	tx := acs[strings.LastIndex(acs, "/")+1:]
	kaspi := e.session(map[string]any{"methods": []string{"card", "kaspi_qr"}})["id"].(string)
	_, app := kaspiQR(t, e, b, kaspi)
	qr := app[strings.LastIndex(app, "/")+1:]
	expired := e.session(map[string]any{"expires_in": 300})["id"].(string)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer c.Close()
	// A digest of every record (each key's DEBUG DIGEST-VALUE), leaving out
	// the append-only logs: the audit trail's once-a-minute flush of refused
	// calls may land during the walk, and is no GET's doing.
	digest := func() string {
		ctx := context.Background()
		keys, err := c.Keys(ctx, "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			if typ, _ := c.Type(ctx, k).Result(); typ == "stream" {
				continue
			}
			d, err := c.Do(ctx, "DEBUG", "DIGEST-VALUE", k).Slice()
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s=%v\n", k, d)
		}
		return b.String()
	}
	e.clock.Advance(6 * time.Minute) // expired is past its time; nothing may write that down on a GET
	before := digest()
	walked := 0
	for _, r := range e.app.Web.Routes() {
		if r.Method != http.MethodGet {
			continue
		}
		for _, id := range []string{open, paid, atBank, kaspi, expired} {
			path := strings.NewReplacer("{id}", id, "{tx}", tx, "{qr}", qr).Replace(r.Path)
			b.get(path + "?lang=ru")
			walked++
		}
	}
	if walked < 15 {
		t.Fatalf("walked only %d GETs", walked)
	}
	if after := digest(); after != before {
		t.Fatalf("%d GETs changed the dataset:\nbefore:\n%s\nafter:\n%s", walked, before, after)
	}
}

// sealCards seals n cards of the env's merchant through the vault, from 32
// goroutines.
func sealCards(t *testing.T, e *env, n int) {
	t.Helper()
	pan, err := card.ParsePAN("4242424242424242")
	if err != nil {
		t.Fatal(err)
	}
	c := vault.Card{PAN: pan, Name: "IVAN PETROV", Expiry: card.Expiry{Month: 12, Year: time.Now().Year() + 3}}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if _, err := e.app.Vault.Tokenize(context.Background(), e.merchant, c); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
