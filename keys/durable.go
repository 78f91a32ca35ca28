package keys

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DurableFile is the name of the durable store's file in its directory.
const DurableFile = "keys.db"

var (
	bucketKeys     = []byte("keys")
	bucketAccounts = []byte("accounts")
	bucketMeta     = []byte("meta")
	metaVersion    = []byte("version")
)

// Durable is a Store on one instance's disk (dir/keys.db, a bbolt
// database): every key and account survives a restart. Reads are answered
// from memory, exactly as a Memory answers; each write is on disk, synced,
// before it returns. One process at a time may open a directory; use the
// Redis store for several instances. It is safe for concurrent use.
type Durable struct {
	*Memory
	db *bolt.DB
}

var _ Store = (*Durable)(nil)

// OpenDurable opens (creating when needed) the key store in dir and reads
// it into memory. It fails when another process holds the file (after 5
// s) or the file cannot be read.
func OpenDurable(dir string) (*Durable, error) {
	path := filepath.Join(dir, DurableFile)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("keys: opening %s: %w", path, err)
	}
	d := &Durable{Memory: NewMemory(), db: db}
	if err := d.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("keys: reading %s: %w", path, err)
	}
	d.Memory.persist = d.write
	return d, nil
}

// load reads the file into memory.
func (d *Durable) load() error {
	return d.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketKeys, bucketAccounts, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		m := d.Memory
		if err := tx.Bucket(bucketKeys).ForEach(func(k, v []byte) error {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("key %q: %w", k, err)
			}
			m.apply(r, Record{})
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketAccounts).ForEach(func(k, v []byte) error {
			var a Account
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("account %q: %w", k, err)
			}
			m.accounts[a.ID] = a
			return nil
		}); err != nil {
			return err
		}
		if v := tx.Bucket(bucketMeta).Get(metaVersion); len(v) == 8 {
			m.version = int64(binary.BigEndian.Uint64(v))
		}
		return nil
	})
}

// write puts a record or an account and the new version on disk, in one
// transaction.
func (d *Durable) write(r *Record, a *Account, version int64) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		var err error
		if r != nil {
			var v []byte
			if v, err = json.Marshal(r); err == nil {
				err = tx.Bucket(bucketKeys).Put([]byte(r.ID), v)
			}
		}
		if a != nil {
			var v []byte
			if v, err = json.Marshal(a); err == nil {
				err = tx.Bucket(bucketAccounts).Put([]byte(a.ID), v)
			}
		}
		if err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(metaVersion, binary.BigEndian.AppendUint64(nil, uint64(version)))
	})
}

// Close closes the file. Writes after Close fail.
func (d *Durable) Close() error { return d.db.Close() }
