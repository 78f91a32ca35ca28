package alerts

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DurableFile is the name of the durable ledger's file in its directory.
const DurableFile = "alerts.db"

var (
	bucketClaimed = []byte("claimed")
	bucketPending = []byte("pending")
)

// Durable is a Ledger on one instance's disk (dir/alerts.db, a bbolt
// database): each claim and delivery is synced before it returns, so
// after a restart no alert fires twice and every pending one is still
// delivered. One process at a time may open a directory.
type Durable struct{ db *bolt.DB }

var _ Ledger = (*Durable)(nil)

// OpenDurable opens (creating when needed) the ledger in dir.
func OpenDurable(dir string) (*Durable, error) {
	path := filepath.Join(dir, DurableFile)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("alerts: opening %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketClaimed, bucketPending} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("alerts: %s: %w", path, err)
	}
	return &Durable{db: db}, nil
}

// Close closes the file.
func (d *Durable) Close() error { return d.db.Close() }

// Claim implements Ledger.
func (d *Durable) Claim(_ context.Context, a Alert) (bool, error) {
	body, err := json.Marshal(a)
	if err != nil {
		return false, fmt.Errorf("alerts: %w", err)
	}
	claimed := false
	err = d.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketClaimed)
		if c.Get([]byte(a.ID)) != nil {
			return nil
		}
		claimed = true
		if err := c.Put([]byte(a.ID), []byte(a.Time.UTC().Format(time.RFC3339))); err != nil {
			return err
		}
		return tx.Bucket(bucketPending).Put([]byte(a.ID), body)
	})
	if err != nil {
		return false, fmt.Errorf("alerts: claiming %s: %w", a.ID, err)
	}
	return claimed, nil
}

// Pending implements Ledger.
func (d *Durable) Pending(context.Context) ([]Alert, error) {
	var out []Alert
	err := d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPending).ForEach(func(k, v []byte) error {
			var a Alert
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("alert %s: %w", k, err)
			}
			out = append(out, a)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("alerts: %w", err)
	}
	slices.SortFunc(out, func(a, b Alert) int { return a.Time.Compare(b.Time) })
	return out, nil
}

// Delivered implements Ledger.
func (d *Durable) Delivered(_ context.Context, id string) error {
	if err := d.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketPending).Delete([]byte(id)) }); err != nil {
		return fmt.Errorf("alerts: %w", err)
	}
	return nil
}
