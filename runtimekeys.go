package gatekit

import (
	"context"
	"fmt"

	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/keys"
	"github.com/gatekit/gatekit/middleware"
)

// RuntimeKeysConfig is the part of [Config] for keys that change at
// runtime.
type RuntimeKeysConfig struct {
	// Store, when set, keeps API keys created, rotated and revoked at
	// runtime (keys.NewMemory, keys.OpenDurable, keys/redisstore): Mount
	// loads Config.Keys into it read-only (revoking the file's keys of an
	// earlier start that the file no longer lists), seeds it with the accounts of
	// Budgets.Accounts that it does not hold yet, and authenticates
	// against it through a keys.Registry, which Gate.Registry returns for
	// an admin API. Ignored when Config.KeyStore is set.
	Store keys.Store `yaml:"-"`
	// Prefix names the provider in the keys gatekit generates
	// ("sk-PREFIX-..."). Default: keys.DefaultPrefix.
	Prefix string `yaml:"prefix"`
	// Registry, when set, tunes the registry (its clock, cache size and
	// poll interval); its Prefix, Principal and ValidTier are set by
	// Mount.
	Registry *keys.Config `yaml:"-"`
}

// Registry returns the registry of runtime keys g authenticates with, or
// nil when Config.RuntimeKeys.Store is not set.
func (g *Gate) Registry() *keys.Registry { return g.registry }

// newRegistry builds the registry of cfg.RuntimeKeys and loads the file's
// keys and account budgets into its store.
func newRegistry(ctx context.Context, cfg Config) (*keys.Registry, error) {
	var rc keys.Config
	if cfg.RuntimeKeys.Registry != nil {
		rc = *cfg.RuntimeKeys.Registry
	}
	rc.Prefix = cfg.RuntimeKeys.Prefix
	rc.Principal = func(k keys.Key, a *keys.Account) *middleware.Principal { return principalOf(cfg, k, a) }
	rc.ValidTier = func(tier string) bool { _, ok := cfg.Tiers[tier]; return ok }
	if rc.Logger == nil {
		rc.Logger = cfg.Logger
	}
	reg, err := keys.New(cfg.RuntimeKeys.Store, &rc)
	if err != nil {
		return nil, fmt.Errorf("gatekit: %w", err)
	}
	for _, k := range cfg.Keys {
		account := k.Account
		if account == "" {
			account = k.ID
		}
		key := keys.Key{ID: k.ID, Account: account, Tier: k.Tier, Models: k.Models}
		if l := k.LimitConfig; l != (LimitConfig{}) {
			key.Limits = &keys.Limits{RPM: l.RPM, RPMBurst: l.RPMBurst, TPM: l.TPM, TPMBurst: l.TPMBurst, MaxParallel: l.MaxParallel}
		}
		if k.Budget != nil {
			period, _ := k.Budget.period()
			key.Budget = &keys.Budget{Limit: budget.Micros(k.Budget.Limit), Period: period}
		}
		d := keys.DigestOf(k.Key)
		if k.Key == "" {
			raw, _ := middleware.ParseKeyDigest(k.KeySHA256)
			d = keys.Digest(raw)
		}
		if err := reg.Load(ctx, key, d); err != nil {
			reg.Close()
			return nil, fmt.Errorf("gatekit: %w", err)
		}
	}
	ids := make([]string, len(cfg.Keys))
	for i, k := range cfg.Keys {
		ids[i] = k.ID
	}
	if err := reg.RetireLoaded(ctx, ids); err != nil {
		reg.Close()
		return nil, fmt.Errorf("gatekit: %w", err)
	}
	for name, ab := range cfg.Budgets.Accounts {
		period, _ := ab.period()
		if err := reg.SeedAccount(ctx, keys.Account{ID: name, Budget: &keys.Budget{Limit: budget.Micros(ab.Limit), Period: period}}); err != nil {
			reg.Close()
			return nil, fmt.Errorf("gatekit: %w", err)
		}
	}
	return reg, nil
}

// principalOf is the principal of a runtime key, as keyStore builds one
// from the file: the tier's models and budget where the key sets none, and
// the account's budget as the store holds it.
func principalOf(cfg Config, k keys.Key, a *keys.Account) *middleware.Principal {
	p := keys.DefaultPrincipal(k, nil)
	tier := cfg.Tiers[k.Tier]
	if len(p.Models) == 0 {
		p.Models = tier.Models
	}
	if k.Budget == nil && tier.Budget != nil {
		period, _ := tier.Budget.period()
		p.Budgets = append(p.Budgets, budget.Scope{Tag: k.Account, Kind: "key", ID: k.ID, Limit: budget.Micros(tier.Budget.Limit), Period: period})
	}
	if a != nil && a.Budget != nil {
		p.Budgets = append(p.Budgets, budget.Scope{Tag: k.Account, Kind: "account", ID: k.Account, Limit: a.Budget.Limit, Period: a.Budget.Period})
	}
	return p
}
