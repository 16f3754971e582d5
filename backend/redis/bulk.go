package redis

import (
	"context"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

var _ backend.Bulk = (*Backend)(nil)

// bulkPage is the most scripts one pipeline of a bulk call carries; a larger
// call is sent as several pipelines, one after the other.
const bulkPage = 1000

// GetMany implements [backend.Bulk]: get.lua once per key, pipelined (split
// per node in a cluster: every script touches one hash slot), with the EVAL
// fallback for a node that lost its script cache. It writes nothing.
func (b *Backend) GetMany(ctx context.Context, keys []bucket.Key, _ time.Time) ([]backend.Entry, error) {
	if b.closed.Load() {
		return nil, backend.ErrClosed
	}
	out := make([]backend.Entry, 0, len(keys))
	for start := 0; start < len(keys); start += bulkPage {
		chunk := keys[start:min(start+bulkPage, len(keys))]
		page := make([]found, len(chunk))
		for i, k := range chunk {
			page[i] = found{key: k, keys: keysFor(b.prefix, k)}
		}
		vals, err := b.runPage(ctx, b.scripts.get, page, args{b.clockArg()})
		if err != nil {
			return nil, fmt.Errorf("get many: %w", err)
		}
		for i, v := range vals {
			s, ok, err := decodeGet(v)
			if err != nil {
				return nil, fmt.Errorf("get many: get %s: %w", chunk[i], err)
			}
			if ok {
				out = append(out, backend.Entry{Key: chunk[i], State: s})
			}
		}
	}
	return out, nil
}

// ObserveMany implements [backend.Bulk]: observe.lua once per lesson,
// pipelined in pages of up to 1000 (split per node in a cluster, each
// script on its bucket's one hash slot, so nothing can raise CROSSSLOT). The
// lessons of one bucket go to one node in order on one connection, so they
// apply in order.
//
// A node that lost its script cache answers NOSCRIPT; every lesson of that
// bucket from the first such answer on is then run again, in order, with the
// EVAL fallback (a later lesson that had applied applies twice, which
// teaches nothing new), so the bucket still ends as the lessons in order
// would leave it.
func (b *Backend) ObserveMany(ctx context.Context, lessons []backend.KeyedObserve) error {
	if b.closed.Load() {
		return backend.ErrClosed
	}
	errs := make([]error, len(lessons))
	for start := 0; start < len(lessons); start += bulkPage {
		end := min(start+bulkPage, len(lessons))
		b.observePage(ctx, lessons[start:end], errs[start:end])
	}
	failed, first := 0, error(nil)
	for _, err := range errs {
		if err != nil {
			if first == nil {
				first = err
			}
			failed++
		}
	}
	switch {
	case failed == 0:
		return nil
	case failed == len(lessons):
		return fmt.Errorf("observe many: %d lessons failed, first: %w", failed, first)
	default:
		return &backend.BulkError{Errs: errs}
	}
}

// observePage runs one pipeline of lessons, within the per-call timeout plus
// perBucket per lesson, and records each lesson's error in errs (of the same
// length).
func (b *Backend) observePage(ctx context.Context, page []backend.KeyedObserve, errs []error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout+time.Duration(len(page))*perBucket)
	defer cancel()
	clock := b.clockArg()
	keys := make([][]string, len(page))
	argv := make([]args, len(page))
	pipe := b.client.Pipeline()
	cmds := make([]*goredis.Cmd, len(page))
	for i := range page {
		l := &page[i]
		keys[i] = keysFor(b.prefix, l.Key).slice()
		argv[i] = args{clock}.observation(&l.Observation).limits(l.Defaults)
		cmds[i] = b.scripts.observe.EvalSha(ctx, pipe, keys[i], argv[i]...)
	}
	_, _ = pipe.Exec(ctx) // errors are examined per command below

	rerunFrom := make(map[bucket.Key]bool) // buckets whose lessons run again from a NOSCRIPT on
	for i, cmd := range cmds {
		k := page[i].Key
		if rerunFrom[k] || isNoScript(cmd.Err()) {
			rerunFrom[k] = true
			v, err := b.scripts.observe.Run(ctx, b.client, keys[i], argv[i]...).Result()
			errs[i] = b.checkObserve(k, v, err)
			continue
		}
		errs[i] = b.checkObserve(k, cmd.Val(), cmd.Err())
	}
}

// checkObserve returns the error of one observe.lua call on bucket k, noting
// failures for the cluster's slot map.
func (b *Backend) checkObserve(k bucket.Key, v any, err error) error {
	b.noteFailure(err)
	if err != nil {
		return fmt.Errorf("observe %s: %w", k, err)
	}
	if _, err := replyStrings(v, 1); err != nil {
		return fmt.Errorf("observe %s: %w", k, err)
	}
	return nil
}
