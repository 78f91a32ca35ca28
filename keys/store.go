package keys

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/gatekit/gatekit/budget"
)

// State is a key's state: active keys authenticate, revoked keys never do
// again.
type State string

// The states of a key.
const (
	Active  State = "active"
	Revoked State = "revoked"
)

// Key is one API key as stored and shown: everything but its secret.
// Limits, budgets and spend belong to its ID, so they survive a rotation.
type Key struct {
	// ID names the key in limits, budgets, logs and the admin API
	// ("key_3f9a..."); it is not secret.
	ID string `json:"id"`
	// Account is the account the key belongs to; an account's budget is
	// shared by its keys.
	Account string `json:"account"`
	// Tier names the key's plan; the tier's limits, models and budget
	// apply where the key sets none.
	Tier string `json:"tier,omitempty"`
	// Models lists the models the key may use; empty takes its tier's.
	Models []string `json:"models,omitempty"`
	// Limits are the key's own rate limits; nil inherits the tier's.
	Limits *Limits `json:"limits,omitempty"`
	// Budget is the key's own spending cap; nil inherits the tier's.
	Budget *Budget `json:"budget,omitempty"`
	// Hint shows the current secret's prefix and last four characters.
	Hint string `json:"hint"`
	// CreatedAt is when the key was created.
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt, when set, is when the key stops authenticating (401
	// expired_api_key).
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// State is active or revoked.
	State State `json:"state"`
	// ReadOnly marks a key loaded from the configuration file: the admin
	// API shows it but cannot change it.
	ReadOnly bool `json:"read_only,omitempty"`
	// Rev counts the writes of the record; stores use it to refuse a
	// write based on a stale read.
	Rev int64 `json:"rev"`
}

// Limits are a key's own rate limits; zero fields inherit.
type Limits struct {
	// RPM is requests per minute.
	RPM int64 `json:"rpm,omitempty"`
	// RPMBurst is the most requests saved up. Default: RPM.
	RPMBurst int64 `json:"rpm_burst,omitempty"`
	// TPM is tokens per minute.
	TPM int64 `json:"tpm,omitempty"`
	// TPMBurst is the most tokens saved up. Default: TPM.
	TPMBurst int64 `json:"tpm_burst,omitempty"`
	// MaxParallel is the most requests at once per route.
	MaxParallel int64 `json:"max_parallel,omitempty"`
}

// Budget is a spending cap per calendar period.
type Budget struct {
	// Limit is the most that may be spent per period.
	Limit budget.Micros
	// Period is the calendar period the limit applies to.
	Period budget.Period
}

type budgetJSON struct {
	Limit  string `json:"limit_usd"`
	Period string `json:"period"`
}

// MarshalJSON writes {"limit_usd": "5.00", "period": "monthly"}.
func (b Budget) MarshalJSON() ([]byte, error) {
	return json.Marshal(budgetJSON{Limit: USD(b.Limit), Period: b.Period.String()})
}

// UnmarshalJSON reads what MarshalJSON writes; the period defaults to
// monthly.
func (b *Budget) UnmarshalJSON(data []byte) error {
	var j budgetJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return err
	}
	return b.set(j)
}

// UnmarshalJSONFrom reads what MarshalJSON writes from a decoder of
// github.com/go-json-experiment/json, as gatekit's binder and admin API
// decode: names match exactly and an unknown or repeated name is an error
// that names its place in the document. The period defaults to monthly.
func (b *Budget) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	var j budgetJSON
	if err := jsonv2.UnmarshalDecode(dec, &j, jsonv2.RejectUnknownMembers(true)); err != nil {
		return err
	}
	return b.set(j)
}

// set makes b the budget j describes.
func (b *Budget) set(j budgetJSON) error {
	m, err := budget.ParseMicros(j.Limit)
	if err != nil {
		return fmt.Errorf("limit_usd: %w", err)
	}
	if m < 0 || m > budget.MaxMicros {
		return fmt.Errorf("limit_usd: out of range")
	}
	p := budget.Monthly
	if j.Period != "" {
		if p, err = budget.ParsePeriod(j.Period); err != nil {
			return fmt.Errorf("period: %w", err)
		}
	}
	*b = Budget{Limit: m, Period: p}
	return nil
}

// USD writes an amount as a decimal without its unit: "5.00".
func USD(m budget.Micros) string {
	s := m.String()
	if n := len(s) - len(" USD"); n > 0 && s[n:] == " USD" {
		return s[:n]
	}
	return s
}

// Secret is one secret of a key, by its digest. A key has one current
// secret and, after a rotation, old ones accepted until their Until.
type Secret struct {
	// Digest is the SHA-256 digest of the secret.
	Digest Digest
	// Until, when set, is when the secret stops authenticating: the end of
	// a rotation's grace period. Zero for the current secret.
	Until time.Time
}

type secretJSON struct {
	Digest string     `json:"sha256"`
	Until  *time.Time `json:"until,omitempty"`
}

// MarshalJSON writes the digest in hex.
func (s Secret) MarshalJSON() ([]byte, error) {
	j := secretJSON{Digest: s.Digest.String()}
	if !s.Until.IsZero() {
		j.Until = &s.Until
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *Secret) UnmarshalJSON(data []byte) error {
	var j secretJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	b, err := hex.DecodeString(j.Digest)
	if err != nil || len(b) != len(s.Digest) {
		return fmt.Errorf("keys: secret digest: want 64 hex digits")
	}
	copy(s.Digest[:], b)
	s.Until = time.Time{}
	if j.Until != nil {
		s.Until = *j.Until
	}
	return nil
}

// Record is what a Store keeps of a key: the key and its secrets'
// digests.
type Record struct {
	Key
	// Secrets are the digests the key authenticates with.
	Secrets []Secret `json:"secrets"`
}

// digests lists the digests of r's secrets.
func (r Record) digests() []Digest {
	ds := make([]Digest, len(r.Secrets))
	for i, s := range r.Secrets {
		ds[i] = s.Digest
	}
	return ds
}

// Account is an account's own settings: its budget, shared by its keys.
type Account struct {
	// ID names the account.
	ID string `json:"id"`
	// Budget is the account's spending cap; nil for none.
	Budget *Budget `json:"budget,omitempty"`
	// Rev counts the writes of the account.
	Rev int64 `json:"rev"`
}

// Change tells every instance that a key or an account changed, so that
// caches drop what they hold of it.
type Change struct {
	// Version is the store's change counter after this change.
	Version int64 `json:"v"`
	// KeyID is the changed key, or empty.
	KeyID string `json:"key,omitempty"`
	// Accounts are the changed key's accounts before and after the
	// change, or the changed account.
	Accounts []string `json:"accounts,omitempty"`
	// Digests are the digests the key had before or has after the
	// change: a lookup of any of them must go to the store again.
	Digests []Digest `json:"-"`
	// Hex holds Digests in hex, for stores that send changes as JSON.
	Hex []string `json:"digests,omitempty"`
}

// The errors of a Store and of a Registry, found with errors.Is.
var (
	// ErrNotFound: no key or account has that id.
	ErrNotFound = errors.New("keys: not found")
	// ErrConflict: the record changed since it was read (a Put with a
	// stale Rev), or a new record's id is taken.
	ErrConflict = errors.New("keys: changed concurrently")
	// ErrReadOnly: the key comes from the configuration file.
	ErrReadOnly = errors.New("keys: the key comes from the configuration file and is read-only")
	// ErrInvalid: a create or update asked for something impossible.
	ErrInvalid = errors.New("keys: invalid")
)

// Store keeps key records and accounts where every instance of a service
// sees them: in memory for one process, on disk for one instance, or on
// Redis for many. Calls are safe for concurrent use. err is non-nil only
// for a backend failure or the errors above; a missing record is ok ==
// false.
//
// Put and PutAccount are atomic and ordered: each bumps the store's
// version and announces a Change to every Watch, on every instance, with
// the new version. A watcher that misses a change (a dropped connection)
// notices the version moved on its next call to Version.
type Store interface {
	// Get returns the record of key id.
	Get(ctx context.Context, id string) (Record, bool, error)
	// Find returns the record holding a secret with digest d.
	Find(ctx context.Context, d Digest) (Record, bool, error)
	// List returns up to limit records with ids after after, in id order.
	List(ctx context.Context, after string, limit int) ([]Record, error)
	// Put writes r if the stored record's Rev is prevRev (0: no record of
	// r.ID may exist), with Rev prevRev+1, indexing its secrets' digests
	// and dropping the digests the record no longer has; otherwise it
	// returns ErrConflict. It returns the change it announced.
	Put(ctx context.Context, r Record, prevRev int64) (Change, error)
	// GetAccount returns the account id.
	GetAccount(ctx context.Context, id string) (Account, bool, error)
	// PutAccount writes a if the stored account's Rev is prevRev, like Put.
	PutAccount(ctx context.Context, a Account, prevRev int64) (Change, error)
	// Version returns the store's change counter.
	Version(ctx context.Context) (int64, error)
	// Watch calls fn with every change made from now on, by any instance,
	// until ctx ends; fn must not block. It returns once watching has
	// started.
	Watch(ctx context.Context, fn func(Change)) error
}
