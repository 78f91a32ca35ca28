package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"

	"github.com/gatekit/gatekit/admission"
	"github.com/gatekit/gatekit/idempotency"
	"github.com/gatekit/gatekit/internal/idemrecord"
)

// onceKey returns the Redis key of idempotency key under tag: the Tag's
// prefix, so that it shares the Cluster slot of the Tag's admission state,
// and the unpadded base64url SHA-256 of key, whatever bytes key holds.
func (s *Store) onceKey(tag, key string) string {
	sum := sha256.Sum256([]byte(key))
	var b [43]byte
	base64.RawURLEncoding.Encode(b[:], sum[:])
	return s.tagPrefix(tag) + "idem:" + string(b[:])
}

// ReserveOnce implements admission.OnceStore.ReserveOnce: the lookup of
// o.Key, the reservation and the claim of the key are one script run.
func (s *Store) ReserveOnce(ctx context.Context, r *admission.Request, o admission.Once) (admission.Result, idempotency.Begin, error) {
	if err := admission.Validate(r); err != nil {
		return admission.Result{}, idempotency.Begin{}, err
	}
	if o.Lease <= 0 {
		return admission.Result{}, idempotency.Begin{}, idempotency.ErrInvalidTTL
	}
	q := s.reserveCall(r, 3)
	token := s.tokenPrefix + strconv.FormatUint(s.tokens.Add(1), 36)
	q.keys = append(q.keys, s.onceKey(r.Tag, o.Key))
	q.args = append(q.args, o.Fingerprint, token, ceilMillis(o.Lease))
	raw, err := s.call.Run(ctx, "reserve", reserveOnceFn, q.keys, q.args...)
	if err != nil {
		return admission.Result{}, idempotency.Begin{}, err
	}
	reply, _ := raw.([]any)
	var code int64
	if len(reply) > 0 {
		code, _ = reply[0].(int64)
	}
	switch st := idempotency.State(code); st {
	case idempotency.InProgress, idempotency.Mismatch:
		return admission.Result{}, idempotency.Begin{State: st}, nil
	case idempotency.Completed:
		blob, ok := "", len(reply) == 2
		if ok {
			blob, ok = reply[1].(string)
		}
		if !ok {
			break
		}
		rec, err := idemrecord.Decode(blob, o.Fingerprint)
		if err != nil {
			return admission.Result{}, idempotency.Begin{}, fmt.Errorf("redisstore: reserve: %s: %w", q.keys[len(q.keys)-1], err)
		}
		return admission.Result{}, idempotency.Begin{State: st, Record: rec}, nil
	case idempotency.Started:
		v := make([]int64, len(reply)-1)
		for i, x := range reply[1:] {
			n, ok := x.(int64)
			if !ok {
				return admission.Result{}, idempotency.Begin{}, fmt.Errorf("redisstore: reserve: unexpected reply %v", raw)
			}
			v[i] = n
		}
		res, err := q.result(r, v)
		if err != nil || !res.Allowed {
			return res, idempotency.Begin{}, err
		}
		return res, idempotency.Begin{State: idempotency.Started, Token: token}, nil
	}
	return admission.Result{}, idempotency.Begin{}, fmt.Errorf("redisstore: reserve: unexpected reply %v", raw)
}

// SettleOnce implements admission.OnceStore.SettleOnce: the settlement
// and the end of d.Key are one script run, followed by the WAIT of
// Config.SettleReplicas when set.
func (s *Store) SettleOnce(ctx context.Context, r *admission.Request, id admission.ID, u admission.Usage, d admission.Done) (admission.SettleResult, error) {
	var res admission.SettleResult
	if id == (admission.ID{}) {
		id.Tag = r.Tag // nothing to settle: Seq 0 names no reservation
	}
	if err := checkSettle(r, id, u); err != nil {
		return res, err
	}
	how, blob, keep := "a", []byte(nil), int64(0)
	if d.Record != nil {
		if d.TTL <= 0 {
			return res, idempotency.ErrInvalidTTL
		}
		rec := *d.Record
		if rec.CreatedAt.IsZero() {
			rec.CreatedAt = s.now()
		}
		how, keep = "c", ceilMillis(d.TTL)
		blob = idemrecord.Append(make([]byte, 0, idemrecord.Size(&rec)), &rec)
	}
	keys, args := s.settleCall(r, id, u, 4)
	keys = append(keys, s.onceKey(r.Tag, d.Key))
	args = append(args, d.Token, how, blob, keep)
	v, acked, err := s.runSettle(ctx, "settle", settleOnceFn, keys, args)
	if err != nil {
		return res, err
	}
	if len(v) != 2 {
		return res, fmt.Errorf("redisstore: settle: script returned %d values, want 2", len(v))
	}
	var errs []error
	if id.Seq != 0 {
		if v[0] == -1 {
			errs = append(errs, fmt.Errorf("%w: %v", admission.ErrUnknownReservation, id))
		}
		res.Expired = v[0] == 1
	}
	if acked < int64(s.replicas) {
		errs = append(errs, fmt.Errorf("%w: %v: %d of %d replicas within %v", ErrNotReplicated, id, acked, s.replicas, s.settleWait))
	}
	if v[1] == 0 {
		errs = append(errs, idempotency.ErrLeaseLost)
	}
	return res, errors.Join(errs...)
}
