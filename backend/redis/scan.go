package redis

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// scanPage is the COUNT hint of each SCAN call, and so roughly the number of
// buckets whose scripts go to Redis in one pipeline.
const scanPage = 500

// found is one bucket discovered by a scan.
type found struct {
	key  bucket.Key
	keys keySet
}

// List implements [backend.Backend]: every bucket's state advanced to Redis
// TIME, in no particular order.
//
// Cost: List SCANs the whole keyspace of every master (of the one server
// outside a cluster), O(all keys, arl's or not) in pages of 500, and runs
// get.lua once per bucket, pipelined per page. It is meant for the admin API
// and occasional inspection, not for the request path. A bucket that expires
// or is created during the scan may be missing from the result or present.
func (b *Backend) List(ctx context.Context, _ time.Time) ([]backend.Entry, error) {
	if b.closed.Load() {
		return nil, backend.ErrClosed
	}
	var (
		mu   sync.Mutex
		seen = make(map[bucket.Key]bool)
		out  []backend.Entry
	)
	err := b.scanBuckets(ctx, func(ctx context.Context, page []found) error {
		vals, err := b.runPage(ctx, b.scripts.get, page, args{b.clockArg()})
		if err != nil {
			return err
		}
		for i, v := range vals {
			s, ok, err := decodeGet(v)
			if err != nil {
				return fmt.Errorf("get %s: %w", page[i].key, err)
			}
			if !ok {
				continue // expired since the scan saw it
			}
			mu.Lock()
			if !seen[page[i].key] { // SCAN may return a key twice
				seen[page[i].key] = true
				out = append(out, backend.Entry{Key: page[i].key, State: s})
			}
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	return out, nil
}

// RecoverOrphans implements [backend.Backend]: it releases
// every reservation whose deadline is before Redis TIME. Any replica may run it
// at any time; concurrent runs end each reservation once.
//
// Cost: like List, a SCAN of every master's keyspace plus one recover.lua per
// bucket, pipelined per page (and again for a bucket with more than 1000
// orphans). Reserve already reclaims a bucket's expired reservations when the
// bucket is used, so this sweep only matters for buckets that went quiet: run
// it every few seconds to minutes from one background loop per replica.
func (b *Backend) RecoverOrphans(ctx context.Context, _ time.Time) (int, error) {
	if b.closed.Load() {
		return 0, backend.ErrClosed
	}
	var total atomic.Int64
	err := b.scanBuckets(ctx, func(ctx context.Context, page []found) error {
		for len(page) > 0 {
			vals, err := b.runPage(ctx, b.scripts.recover, page, args{b.clockArg(), recoverBatch})
			if err != nil {
				return err
			}
			var more []found
			for i, v := range vals {
				f, err := replyStrings(v, 1)
				if err != nil {
					return fmt.Errorf("recover %s: %w", page[i].key, err)
				}
				n, err := parseInt(f[0])
				if err != nil {
					return fmt.Errorf("recover %s: %w", page[i].key, err)
				}
				total.Add(n)
				if n >= recoverBatch {
					more = append(more, page[i])
				}
			}
			page = more
		}
		return nil
	})
	if err != nil {
		return int(total.Load()), fmt.Errorf("recover orphans: %w", err)
	}
	return int(total.Load()), nil
}

// forEachNode calls fn for every node that holds keys, concurrently: each
// master of a cluster, each shard of a ring, or else the client itself (a
// single node, or the master behind Sentinel).
func (b *Backend) forEachNode(ctx context.Context, fn func(context.Context, goredis.Cmdable) error) error {
	switch c := b.client.(type) {
	case *goredis.ClusterClient:
		return c.ForEachMaster(ctx, func(ctx context.Context, n *goredis.Client) error { return fn(ctx, n) })
	case *goredis.Ring:
		return c.ForEachShard(ctx, func(ctx context.Context, n *goredis.Client) error { return fn(ctx, n) })
	default:
		return fn(ctx, b.client)
	}
}

// scanBuckets SCANs every node for state keys and calls visit with each
// page's buckets; visit runs concurrently for different nodes.
func (b *Backend) scanBuckets(ctx context.Context, visit func(context.Context, []found) error) error {
	pattern := scanPattern(b.prefix)
	return b.forEachNode(ctx, func(ctx context.Context, node goredis.Cmdable) error {
		var cursor uint64
		for {
			cctx, cancel := context.WithTimeout(ctx, b.timeout)
			keys, next, err := node.Scan(cctx, cursor, pattern, scanPage).Result()
			cancel()
			b.noteFailure(err)
			if err != nil {
				return fmt.Errorf("scan: %w", err)
			}
			page := make([]found, 0, len(keys))
			for _, sk := range keys {
				if k, ks, ok := parseStateKey(b.prefix, sk); ok {
					page = append(page, found{key: k, keys: ks})
				}
			}
			if len(page) > 0 {
				if err := visit(ctx, page); err != nil {
					return err
				}
			}
			if next == 0 {
				return nil
			}
			cursor = next
		}
	})
}

// perBucket is the time a page's deadline allows for each bucket's script,
// beyond the per-call timeout.
const perBucket = time.Millisecond

// runPage runs script s once per bucket of page in one pipeline (split by
// node in a cluster), within the per-call timeout plus perBucket per bucket.
// A bucket whose node lost the script cache is run again on its own, with the
// EVAL fallback. It returns the replies in page order, or the first error.
func (b *Backend) runPage(ctx context.Context, s *script, page []found, a args) ([]any, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout+time.Duration(len(page))*perBucket)
	defer cancel()
	pipe := b.client.Pipeline()
	cmds := make([]*goredis.Cmd, len(page))
	for i, f := range page {
		cmds[i] = s.EvalSha(ctx, pipe, f.keys.slice(), a...)
	}
	_, _ = pipe.Exec(ctx) // errors are examined per command below
	out := make([]any, len(page))
	for i, cmd := range cmds {
		v, err := cmd.Result()
		if isNoScript(err) {
			v, err = s.Run(ctx, b.client, page[i].keys.slice(), a...).Result()
		}
		b.noteFailure(err)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", s.name, page[i].key, err)
		}
		out[i] = v
	}
	return out, nil
}
