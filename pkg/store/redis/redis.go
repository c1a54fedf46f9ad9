// Package redis is the store engine for several paypage replicas: Redis as a
// single node, behind Sentinel, or as a Cluster, through go-redis's universal
// client. On a single node (or behind Sentinel) a record lives at
// "pp:{group}:kind:id" and the due index is a sorted set per kind,
// "pp:due:kind". On a Cluster, groups are spread over a fixed number of
// shards, each one hash slot: a record lives at "pp:{sN}:group:kind:id"
// beside its shard's due index "pp:{sN}:due:kind", so a Commit (one Lua
// script) changes records and their due filings in one slot, atomically.
// Logs are Redis Streams.
package redis

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/store"
)

// DB is a store.Store on Redis. The calls of the hot paths (Get, Commit,
// Take, Incr, Allow, Append) go through a batcher: concurrent calls share
// round trips (batch.go).
type DB struct {
	c       goredis.UniversalClient
	cluster bool
	b       *batcher
}

// clusterShards is how many hash slots a Cluster's records are spread over:
// enough to balance them across masters, few enough that a look at every
// shard's due index is one small pipeline. It is part of the key layout and
// never changes for a deployment.
const clusterShards = 32

var _ store.Store = (*DB)(nil)

// Open connects to the Redis named by a URL and checks that it answers:
//
//	redis://[:password@]host:port/db            a single node (rediss:// for TLS)
//	redis://host:port?master_name=M&addr=h2:p   Sentinel: the sentinels' addresses and the master's name
//	redis+cluster://host:port?addr=h2:p         Cluster: seed nodes (rediss+cluster:// for TLS)
func Open(ctx context.Context, rawURL string) (*DB, error) {
	return OpenWith(ctx, rawURL, Options{})
}

// Options tune a connection beyond what its URL says.
type Options struct {
	// RootCAs, when set, are the only authorities a rediss:// server's
	// certificate is checked against, instead of the system's roots: a
	// private CA trusted for Redis alone (--store-ca).
	RootCAs *x509.CertPool
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, rawURL string, o Options) (*DB, error) {
	c, err := newClient(rawURL, o)
	if err != nil {
		return nil, apperr.Wrap(apperr.Invalid, err, "store URL %s", redactURL(rawURL))
	}
	d := New(c)
	if err := d.Ping(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	return d, nil
}

// New wraps an existing client.
func New(c goredis.UniversalClient) *DB {
	_, cluster := c.(*goredis.ClusterClient)
	return &DB{c: c, cluster: cluster, b: newBatcher(c)}
}

func newClient(rawURL string, opts Options) (goredis.UniversalClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	switch {
	case strings.HasSuffix(u.Scheme, "+cluster"):
		u.Scheme = strings.TrimSuffix(u.Scheme, "+cluster")
		o, err := goredis.ParseClusterURL(u.String())
		if err != nil {
			return nil, err
		}
		if err := opts.tls(o.TLSConfig); err != nil {
			return nil, err
		}
		return goredis.NewClusterClient(o), nil
	case u.Query().Has("master_name"):
		o, err := goredis.ParseFailoverURL(rawURL)
		if err != nil {
			return nil, err
		}
		if err := opts.tls(o.TLSConfig); err != nil {
			return nil, err
		}
		return goredis.NewFailoverClient(o), nil
	}
	o, err := goredis.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if err := opts.tls(o.TLSConfig); err != nil {
		return nil, err
	}
	return goredis.NewClient(o), nil
}

// tls applies the options to a URL's TLS configuration (nil: no TLS).
func (o Options) tls(c *tls.Config) error {
	if o.RootCAs == nil {
		return nil
	}
	if c == nil {
		return errors.New("a CA for Redis needs TLS: a rediss:// URL")
	}
	c.RootCAs = o.RootCAs
	return nil
}

// redactURL drops the password from a URL for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}

// Close answers the calls under way, then closes the client.
func (d *DB) Close() error {
	d.b.close()
	return d.c.Close()
}

// run sends one command with the concurrent calls' and returns its error.
func (d *DB) run(ctx context.Context, cmd goredis.Cmder) error {
	if err := d.b.do(ctx, cmd); err != nil {
		return err
	}
	return cmd.Err()
}

// script runs a Lua script by its hash with the concurrent calls, and
// again by its text if Redis does not have it yet (after a restart).
func (d *DB) script(ctx context.Context, s *goredis.Script, keys []string, args ...any) *goredis.Cmd {
	cmdArgs := make([]any, 0, 3+len(keys)+len(args))
	cmdArgs = append(cmdArgs, "evalsha", s.Hash(), len(keys))
	for _, k := range keys {
		cmdArgs = append(cmdArgs, k)
	}
	cmd := goredis.NewCmd(ctx, append(cmdArgs, args...)...)
	if err := d.b.do(ctx, cmd); err != nil {
		// The batcher may still fill cmd: answer with another.
		gone := goredis.NewCmd(ctx)
		gone.SetErr(err)
		return gone
	}
	if err := cmd.Err(); err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
		return s.Run(ctx, d.c, keys, args...)
	}
	return cmd
}

// RoundTrips counts the pipelines the batcher has sent.
func (d *DB) RoundTrips() int64 { return d.b.trips.Load() }

// mapErr turns go-redis errors into store codes, in this one place.
func mapErr(err error) error {
	var netErr net.Error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, goredis.Nil):
		return store.ErrNotFound
	case apperr.Code(err) != apperr.Internal:
		return err
	case strings.Contains(err.Error(), "PAYPAGE_CONFLICT"):
		return store.ErrConflict
	case errors.As(err, &netErr), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, goredis.ErrClosed), errors.Is(err, net.ErrClosed),
		strings.HasPrefix(err.Error(), "LOADING"), strings.HasPrefix(err.Error(), "CLUSTERDOWN"),
		strings.HasPrefix(err.Error(), "READONLY"), strings.HasPrefix(err.Error(), "MASTERDOWN"),
		strings.Contains(err.Error(), "connection refused"), strings.Contains(err.Error(), "EOF"):
		return apperr.Wrap(apperr.Unavailable, err, "store unavailable")
	}
	return err
}

// shard is the hash tag of a group on a Cluster.
func shard(group string) string {
	h := fnv.New32a()
	h.Write([]byte(group))
	return "s" + strconv.Itoa(int(h.Sum32()%clusterShards))
}

func (d *DB) key(k store.Key) string {
	if !d.cluster {
		return "pp:{" + k.G() + "}:" + k.Kind + ":" + k.ID
	}
	return "pp:{" + shard(k.G()) + "}:" + k.G() + ":" + k.Kind + ":" + k.ID
}

// dueKey is the sorted set that files a group's due keys of a kind.
func (d *DB) dueKey(kind, group string) string {
	if !d.cluster {
		return "pp:due:" + kind
	}
	return "pp:{" + shard(group) + "}:due:" + kind
}

// dueKeys are every due index of a kind.
func (d *DB) dueKeys(kind string) []string {
	if !d.cluster {
		return []string{"pp:due:" + kind}
	}
	keys := make([]string, clusterShards)
	for i := range keys {
		keys[i] = "pp:{s" + strconv.Itoa(i) + "}:due:" + kind
	}
	return keys
}

// A due member is "kind:group:id" (keys never hold a colon).
func dueMember(k store.Key) string { return k.Kind + ":" + k.G() + ":" + k.ID }

func parseMember(m string) (store.Key, bool) {
	parts := strings.SplitN(m, ":", 3)
	if len(parts) != 3 {
		return store.Key{}, false
	}
	k := store.Key{Kind: parts[0], Group: parts[1], ID: parts[2]}
	if k.Group == k.ID {
		k.Group = ""
	}
	return k, true
}

// A stored value is "version:expiresUnixMs:value".
func decode(s string) (store.Record, error) {
	v, rest, ok1 := strings.Cut(s, ":")
	e, val, ok2 := strings.Cut(rest, ":")
	ver, err1 := strconv.ParseInt(v, 10, 64)
	exp, err2 := strconv.ParseInt(e, 10, 64)
	if !ok1 || !ok2 || err1 != nil || err2 != nil {
		return store.Record{}, fmt.Errorf("malformed record")
	}
	r := store.Record{Version: ver, Value: []byte(val)}
	if exp > 0 {
		r.ExpiresAt = time.UnixMilli(exp)
	}
	return r, nil
}

// Get reads a record.
func (d *DB) Get(ctx context.Context, k store.Key) (store.Record, error) {
	cmd := goredis.NewStringCmd(ctx, "get", d.key(k))
	if err := d.run(ctx, cmd); err != nil {
		return store.Record{}, mapErr(err)
	}
	return decode(cmd.Val())
}

// commitScript checks every version first, then writes: all or nothing.
// KEYS: the n records, then each one's due index. ARGV: now in ms, then for
// each op: ifVersion, delete (0/1), ttl ms, value, due ms ("" leaves the
// filing, "0" removes it), due member.
var commitScript = goredis.NewScript(`
local now = tonumber(ARGV[1])
local n = #KEYS / 2
local vers = {}
for i = 1, n do
  local b = 1 + (i - 1) * 6
  local want = tonumber(ARGV[b + 1])
  local cur = redis.call('GET', KEYS[i])
  local ver = 0
  if cur then ver = tonumber(string.match(cur, '^(%d+):')) end
  if want >= 0 and want ~= ver then return redis.error_reply('PAYPAGE_CONFLICT') end
  vers[i] = ver
end
for i = 1, n do
  local b = 1 + (i - 1) * 6
  local del = ARGV[b + 2] == '1'
  local due = ARGV[b + 5]
  if del or due == '0' then
    redis.call('ZREM', KEYS[n + i], ARGV[b + 6])
  elseif due ~= '' then
    redis.call('ZADD', KEYS[n + i], tonumber(due), ARGV[b + 6])
  end
  if del then
    redis.call('DEL', KEYS[i])
  else
    local ttl = tonumber(ARGV[b + 3])
    local exp = 0
    if ttl > 0 then exp = now + ttl end
    local v = (vers[i] + 1) .. ':' .. exp .. ':' .. ARGV[b + 4]
    if ttl > 0 then redis.call('SET', KEYS[i], v, 'PX', ttl) else redis.call('SET', KEYS[i], v) end
  end
end
return 1
`)

// Commit runs every op in one Lua script on the group's slot.
func (d *DB) Commit(ctx context.Context, ops ...store.Op) error {
	if err := store.SameGroup(ops); err != nil {
		return err
	}
	keys := make([]string, 2*len(ops))
	args := make([]any, 0, 1+6*len(ops))
	args = append(args, time.Now().UnixMilli())
	for i, op := range ops {
		keys[i] = d.key(op.Key)
		keys[len(ops)+i] = d.dueKey(op.Key.Kind, op.Key.G())
		del := "0"
		if op.Delete {
			del = "1"
		}
		due := ""
		switch {
		case op.Done:
			due = "0"
		case !op.Due.IsZero():
			due = strconv.FormatInt(max(1, op.Due.UnixMilli()), 10)
		}
		args = append(args, op.IfVersion, del, op.TTL.Milliseconds(), op.Value, due, dueMember(op.Key))
	}
	return mapErr(d.script(ctx, commitScript, keys, args...).Err())
}

// Due reads a kind's due index (one sorted set, or one per Cluster shard in
// a pipeline) from the start up to now.
func (d *DB) Due(ctx context.Context, kind string, now time.Time, limit int) ([]store.DueKey, error) {
	by := &goredis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: int64(limit)}
	keys := d.dueKeys(kind)
	cmds := make([]*goredis.ZSliceCmd, len(keys))
	_, err := d.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.ZRangeByScoreWithScores(ctx, k, by)
		}
		return nil
	})
	if err != nil {
		return nil, mapErr(err)
	}
	var out []store.DueKey
	for _, c := range cmds {
		for _, z := range c.Val() {
			m, _ := z.Member.(string)
			if k, ok := parseMember(m); ok {
				out = append(out, store.DueKey{Key: k, At: time.UnixMilli(int64(z.Score))})
			}
		}
	}
	slices.SortFunc(out, func(a, b store.DueKey) int { return a.At.Compare(b.At) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Take reads and deletes a record with GETDEL.
func (d *DB) Take(ctx context.Context, k store.Key) ([]byte, error) {
	cmd := goredis.NewStringCmd(ctx, "getdel", d.key(k))
	if err := d.run(ctx, cmd); err != nil {
		return nil, mapErr(err)
	}
	r, err := decode(cmd.Val())
	return r.Value, err
}

var incrScript = goredis.NewScript(`
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if n == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
`)

// countScript reads a counter and what is left of its window, in one step.
var countScript = goredis.NewScript(`
local n = redis.call('GET', KEYS[1])
if not n then return {0, 0} end
return {tonumber(n), redis.call('PTTL', KEYS[1])}
`)

// Count reads a counter without counting, and when it expires.
func (d *DB) Count(ctx context.Context, k store.Key) (int64, time.Time, error) {
	return d.counter(ctx, countScript, k)
}

// Incr increments a counter that expires window after its first
// increment, and says when that is.
func (d *DB) Incr(ctx context.Context, k store.Key, window time.Duration) (int64, time.Time, error) {
	return d.counter(ctx, incrScript, k, window.Milliseconds())
}

// counter runs a counter's script, which answers the count and the
// milliseconds left of its window (Redis's count; the end is read from
// this process's clock).
func (d *DB) counter(ctx context.Context, script *goredis.Script, k store.Key, args ...any) (int64, time.Time, error) {
	now := time.Now()
	v, err := d.script(ctx, script, []string{d.key(k)}, args...).Int64Slice()
	if err != nil {
		return 0, time.Time{}, mapErr(err)
	}
	if len(v) != 2 {
		return 0, time.Time{}, fmt.Errorf("redis: a counter's script answered %v", v)
	}
	if v[0] == 0 || v[1] < 0 {
		return v[0], time.Time{}, nil
	}
	return v[0], now.Add(time.Duration(v[1]) * time.Millisecond), nil
}

// allowScript is store.Bucket.Take in Lua, over "tokens:unix microseconds";
// it answers 0 when a token was spent, and the wait in microseconds.
var allowScript = goredis.NewScript(`
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local tokens, at = burst, now
local s = redis.call('GET', KEYS[1])
if s then
  local t, a = string.match(s, '^([^:]+):([^:]+)$')
  if t and tonumber(t) and tonumber(a) then tokens, at = tonumber(t), tonumber(a) end
end
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate / 1e6)
  at = now
end
if tokens < 1 then return math.ceil((1 - tokens) / rate * 1e6) end
tokens = tokens - 1
redis.call('SET', KEYS[1], string.format('%.17g:%d', tokens, at), 'PX', math.ceil((burst - tokens) / rate * 1e3) + 1)
return 0
`)

// Allow spends a token of a bucket in one script.
func (d *DB) Allow(ctx context.Context, k store.Key, b store.Bucket, now time.Time) (time.Duration, error) {
	if err := b.Check(); err != nil {
		return 0, err
	}
	us, err := d.script(ctx, allowScript, []string{d.key(k)}, b.PerSecond, b.Burst, now.UnixMicro()).Int64()
	return time.Duration(us) * time.Microsecond, mapErr(err)
}

// Scan walks the keys of a kind with SCAN, on every master of a Cluster.
func (d *DB) Scan(ctx context.Context, kind string, fn func(id string, r store.Record) error) error {
	pattern := "pp:{*}:" + kind + ":*"
	if d.cluster {
		pattern = "pp:{s*}:*:" + kind + ":*"
	}
	walk := func(ctx context.Context, c goredis.UniversalClient) error {
		it := c.Scan(ctx, 0, pattern, 500).Iterator()
		for it.Next(ctx) {
			k := it.Val()
			i := strings.Index(k, "}:")
			if i < 0 {
				continue
			}
			rest := strings.Split(k[i+2:], ":")
			if d.cluster && len(rest) == 3 {
				rest = rest[1:] // drop the group
			}
			if len(rest) != 2 || rest[0] != kind {
				continue
			}
			id := rest[1]
			s, err := c.Get(ctx, k).Result()
			if errors.Is(err, goredis.Nil) {
				continue // expired or deleted since SCAN saw it
			}
			if err != nil {
				return mapErr(err)
			}
			r, err := decode(s)
			if err != nil {
				continue // a counter, not a record
			}
			if err := fn(id, r); err != nil {
				return err
			}
		}
		return mapErr(it.Err())
	}
	cc, ok := d.c.(*goredis.ClusterClient)
	if !ok {
		return walk(ctx, d.c)
	}
	// ForEachMaster runs in parallel; fn is called one record at a time, so
	// gather the masters first and walk them in turn.
	var mu sync.Mutex
	var masters []*goredis.Client
	err := cc.ForEachMaster(ctx, func(_ context.Context, c *goredis.Client) error {
		mu.Lock()
		masters = append(masters, c)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return mapErr(err)
	}
	for _, m := range masters {
		if err := walk(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

func streamKey(log string) string { return "pp:{log_" + log + "}:stream" }

// Append adds an entry to the log's stream.
func (d *DB) Append(ctx context.Context, log string, data []byte) (string, error) {
	cmd := goredis.NewStringCmd(ctx, "xadd", streamKey(log), "*", "d", data)
	if err := d.run(ctx, cmd); err != nil {
		return "", mapErr(err)
	}
	return cmd.Val(), nil
}

// Read returns entries after the given stream ID.
func (d *DB) Read(ctx context.Context, log, after string, limit int) ([]store.Entry, error) {
	start := "-"
	if after != "" {
		start = "(" + after
	}
	msgs, err := d.c.XRangeN(ctx, streamKey(log), start, "+", int64(limit)).Result()
	if err != nil {
		return nil, mapErr(err)
	}
	out := make([]store.Entry, 0, len(msgs))
	for _, m := range msgs {
		s, _ := m.Values["d"].(string)
		out = append(out, store.Entry{ID: m.ID, Data: []byte(s)})
	}
	return out, nil
}

// TrimLog removes the oldest entries while more than keep remain, none
// after through: it finds the last removable entry among the oldest
// XLEN-keep and trims below the ID after it (XTRIM MINID), in batches.
func (d *DB) TrimLog(ctx context.Context, log, through string, keep int) (int, error) {
	if through == "" {
		return 0, nil
	}
	key := streamKey(log)
	removed := 0
	for {
		n, err := d.c.XLen(ctx, key).Result()
		if err != nil {
			return removed, mapErr(err)
		}
		excess := n - int64(keep)
		if excess <= 0 {
			return removed, nil
		}
		msgs, err := d.c.XRangeN(ctx, key, "-", through, min(excess, 10_000)).Result()
		if err != nil {
			return removed, mapErr(err)
		}
		if len(msgs) == 0 {
			return removed, nil
		}
		next, err := nextStreamID(msgs[len(msgs)-1].ID)
		if err != nil {
			return removed, err
		}
		k, err := d.c.XTrimMinID(ctx, key, next).Result()
		if err != nil {
			return removed, mapErr(err)
		}
		removed += int(k)
		if len(msgs) < 10_000 {
			return removed, nil
		}
	}
}

// nextStreamID is the stream ID right after id ("ms-seq").
func nextStreamID(id string) (string, error) {
	ms, seq, ok := strings.Cut(id, "-")
	n, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil {
		return "", fmt.Errorf("stream ID %q", id)
	}
	return ms + "-" + strconv.FormatUint(n+1, 10), nil
}

// Ping checks that Redis answers.
func (d *DB) Ping(ctx context.Context) error { return mapErr(d.c.Ping(ctx).Err()) }

// Client returns the underlying client, for engine-specific features such as
// stream consumer groups.
func (d *DB) Client() goredis.UniversalClient { return d.c }

// slogLogger carries go-redis's own messages (reconnects, pool errors) into
// the service's structured log.
type slogLogger struct{ log *slog.Logger }

func (l slogLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client", "msg", fmt.Sprintf(format, v...))
}

// SetLogger sends go-redis's messages to log (the setting is process-wide).
func SetLogger(log *slog.Logger) { goredis.SetLogger(slogLogger{log}) }
