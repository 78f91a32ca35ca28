package durable

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/gatekit/gatekit/budget"
)

// lockTimeout is how long Open waits for another process to let go of the
// data file.
const lockTimeout = time.Second

// corrupt returns the error for a data file that cannot be trusted.
func corrupt(path string, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrCorrupt, path, fmt.Sprintf(format, args...))
}

// openError describes an error of bolt.Open on path.
func openError(path string, err error) error {
	var pathErr *fs.PathError
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("durable: %s is in use by another process (still locked after %v)", path, lockTimeout)
	case errors.As(err, &pathErr):
		return fmt.Errorf("durable: cannot open %s: %w", path, err)
	}
	// Bad magic number, checksum, version or size: bbolt's own checks of
	// the file's header.
	return corrupt(path, "%v", err)
}

// create makes a new, empty data file at path: written under another name
// and renamed, so that a file named path is always complete, and an empty
// one is a damaged one.
func create(path string) error {
	tmp := path + ".new"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("durable: %w", err)
	}
	db, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		return fmt.Errorf("durable: creating %s: %w", tmp, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		if err := meta.Put(keyFormat, []byte(formatVersion)); err != nil {
			return err
		}
		for _, name := range [][]byte{bucketSpend, bucketRecords, bucketExpiry} {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("durable: creating %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// contents is what load read from a data file.
type contents struct {
	spends  []budget.Spend
	records []pending
}

// load checks the data file at path from end to end and reads what it
// holds, before anything writes to it: any damage is an error wrapping
// ErrCorrupt and naming path, never a reason to start afresh.
//
// It opens the file read-only first because bbolt reads its free list when
// opening for writing, and a file cut short would then fault on the mapped
// pages past its end. Here the size is checked before any page is read, and
// every page is checked by checkPages before bbolt's own Check and the
// reading of every key; should a damaged page still fault, the fault
// becomes an error.
func load(path string, loc *time.Location, logger *slog.Logger) (c contents, err error) {
	info, err := os.Stat(path)
	if err != nil {
		return c, fmt.Errorf("durable: %w", err)
	}
	if !info.Mode().IsRegular() {
		return c, fmt.Errorf("durable: %s is not a regular file", path)
	}
	if info.Size() == 0 {
		return c, corrupt(path, "the file is empty")
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: lockTimeout})
	if err != nil {
		return c, openError(path, err)
	}
	defer db.Close()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			c, err = contents{}, corrupt(path, "reading it failed: %v", r)
		}
	}()
	err = db.View(func(tx *bolt.Tx) error {
		if tx.Size() > info.Size() {
			return corrupt(path, "%d bytes long, but its pages reach %d: it was cut short", info.Size(), tx.Size())
		}
		pageSize := db.Info().PageSize
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("durable: %w", err)
		}
		err = checkPages(f, pageSize, uint64(tx.Size())/uint64(pageSize), uint64(tx.ID()))
		if bad := badMetaPages(f, pageSize); len(bad) > 0 {
			logger.Warn("durable: a meta page of the data file is damaged; using the other one, which may be one write older",
				"path", path, "page", bad[0], "transaction", tx.ID())
		}
		f.Close()
		if err != nil {
			return corrupt(path, "%v", err)
		}
		var first error
		for err := range tx.Check() { // drained to the end, so that its goroutine ends
			if first == nil {
				first = err
			}
		}
		if first != nil {
			return corrupt(path, "%v", first)
		}
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return corrupt(path, "not a gatekit data file")
		}
		if v := meta.Get(keyFormat); string(v) != formatVersion {
			return corrupt(path, "unknown format %q (this version reads %q)", v, formatVersion)
		}
		spend, records, expiry := tx.Bucket(bucketSpend), tx.Bucket(bucketRecords), tx.Bucket(bucketExpiry)
		if spend == nil || records == nil || expiry == nil {
			return corrupt(path, "a bucket is missing")
		}
		err = spend.ForEach(func(k, v []byte) error {
			key, err := decodeSpendKey(k)
			if err != nil {
				return corrupt(path, "spend key %q is malformed", k)
			}
			total, err := decodeSpend(k, v)
			if err != nil {
				return corrupt(path, "the spend of %v/%v/%v (%v) fails its checksum", key.tag, key.kind, key.id, key.period)
			}
			c.spends = append(c.spends, key.spend(total, loc))
			return nil
		})
		if err != nil {
			return err
		}
		err = records.ForEach(func(k, v []byte) error {
			p, err := decodeRecord(k, v)
			if err != nil {
				return corrupt(path, "idempotency record %x fails its checksum", k)
			}
			if expiry.Get(expiryKey(p.expires, k)) == nil {
				return corrupt(path, "idempotency record %x is missing from the expiry index", k)
			}
			c.records = append(c.records, p)
			return nil
		})
		if err != nil {
			return err
		}
		if n, m := records.Stats().KeyN, expiry.Stats().KeyN; n != m {
			return corrupt(path, "%d idempotency records but %d in the expiry index", n, m)
		}
		return nil
	})
	return c, err
}

// batch is what one write takes from the queues.
type batch struct {
	spends  []queuedSpend  // in the order of enc
	records []queuedRecord // in the order of rkey
}

type queuedRecord struct {
	pending
	rkey []byte // recordKey(key)
}

type queuedSpend struct {
	key    spendKey
	enc    []byte
	amount budget.Micros
}

func (b *batch) empty() bool { return len(b.spends) == 0 && len(b.records) == 0 }

// apply writes b in tx: it adds each spend to its budget's total and
// replaces each record.
func (b *batch) apply(tx *bolt.Tx) error {
	spend := tx.Bucket(bucketSpend)
	for _, q := range b.spends {
		var total budget.Micros
		if v := spend.Get(q.enc); v != nil {
			var err error
			if total, err = decodeSpend(q.enc, v); err != nil {
				return fmt.Errorf("%w: the spend of %v/%v/%v fails its checksum", ErrCorrupt, q.key.tag, q.key.kind, q.key.id)
			}
		}
		if err := spend.Put(q.enc, encodeSpend(q.enc, total+q.amount)); err != nil {
			return err
		}
	}
	records, expiry := tx.Bucket(bucketRecords), tx.Bucket(bucketExpiry)
	ekeys := make([][]byte, 0, len(b.records))
	for i := range b.records {
		r := &b.records[i]
		if v := records.Get(r.rkey); v != nil {
			old, err := decodeRecord(r.rkey, v)
			if err != nil {
				return fmt.Errorf("%w: idempotency record %x fails its checksum", ErrCorrupt, r.rkey)
			}
			if err := expiry.Delete(expiryKey(old.expires, r.rkey)); err != nil {
				return err
			}
		}
		if err := records.Put(r.rkey, encodeRecord(&r.pending)); err != nil {
			return err
		}
		ekeys = append(ekeys, expiryKey(r.expires, r.rkey))
	}
	slices.SortFunc(ekeys, bytes.Compare)
	for _, k := range ekeys {
		if err := expiry.Put(k, nil); err != nil {
			return err
		}
	}
	return nil
}

// prune deletes in tx the spend of periods that ended by now, on loc's
// calendar, and the records that expired by now. It returns how many of
// each it deleted.
func prune(tx *bolt.Tx, now time.Time, loc *time.Location) (spends, records int, err error) {
	var ended [][]byte
	spend := tx.Bucket(bucketSpend)
	err = spend.ForEach(func(k, _ []byte) error {
		key, err := decodeSpendKey(k)
		if err != nil {
			return fmt.Errorf("%w: spend key %q is malformed", ErrCorrupt, k)
		}
		if key.ended(now, loc) {
			ended = append(ended, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	for _, k := range ended {
		if err := spend.Delete(k); err != nil {
			return 0, 0, err
		}
	}

	var expired [][]byte
	nowMs := now.UnixMilli()
	c := tx.Bucket(bucketExpiry).Cursor()
	for k, _ := c.First(); k != nil && expiryOf(k) <= nowMs; k, _ = c.Next() {
		expired = append(expired, bytes.Clone(k))
	}
	recs, expiry := tx.Bucket(bucketRecords), tx.Bucket(bucketExpiry)
	for _, k := range expired {
		if err := expiry.Delete(k); err != nil {
			return 0, 0, err
		}
		if err := recs.Delete(k[8:]); err != nil {
			return 0, 0, err
		}
	}
	return len(ended), len(expired), nil
}
