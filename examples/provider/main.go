// Command provider is an OpenAI-compatible demo API served through gatekit:
// chat completions (plain and streamed), a model list and an upload route,
// with every failure answered in gatekit's envelope.
//
//	go run ./examples/provider [-addr 127.0.0.1:8080] [-config gatekit.yaml] [-redis redis://127.0.0.1:6379/0] [-data DIR] [-admin-token TOKEN]
//
// With -admin-token (or GATEKIT_ADMIN_TOKEN), keys live in a store that
// changes at runtime (on Redis with -redis, in DIR/keys.db with -data, else
// in memory), the file's keys loaded read-only, and the admin API answers
// under /admin/v1/ on the same listener (see package admin and
// `go run ./cmd/gatekit`).
//
// On SIGTERM or SIGINT it stops accepting connections and lets requests in
// flight finish (up to -grace, 10 s by default); then it closes the
// connections still open, settles every request still in flight with the
// usage it reported so far, and writes and closes the data store.
//
// Without -config it uses the gatekit.yaml beside this file, built in.
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/gatekit/gatekit"
	"github.com/gatekit/gatekit/admin"
	admredis "github.com/gatekit/gatekit/admission/redisstore"
	"github.com/gatekit/gatekit/alerts"
	alertsredis "github.com/gatekit/gatekit/alerts/redisstore"
	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/examples/provider/app"
	"github.com/gatekit/gatekit/keys"
	keysredis "github.com/gatekit/gatekit/keys/redisstore"
	"github.com/gatekit/gatekit/middleware"
	"github.com/gatekit/gatekit/redislog"
)

//go:embed gatekit.yaml
var defaultConfig []byte

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "provider:", err)
		os.Exit(1)
	}
}

// run serves the demo until ctx ends, then shuts down gracefully. ready,
// when set, is told the address once the listener is open.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer, ready func(addr string)) error {
	flags := flag.NewFlagSet("provider", flag.ContinueOnError)
	flags.SetOutput(stderr)
	addr := flags.String("addr", "127.0.0.1:8080", "address to listen on")
	configPath := flags.String("config", "", "gatekit YAML configuration (default: the built-in gatekit.yaml)")
	redisURL := flags.String("redis", getenv("GATEKIT_REDIS_URL"), "Redis URL (redis://host:port/db) to keep every store in; default (and env GATEKIT_REDIS_URL unset): in memory")
	dataDir := flags.String("data", "", "directory to keep budgets and idempotent responses in across restarts (single instance; default: memory only)")
	adminToken := flags.String("admin-token", getenv("GATEKIT_ADMIN_TOKEN"), "token of the admin API under /admin/v1/ (at least 16 characters; env GATEKIT_ADMIN_TOKEN); unset, keys come from the configuration only and there is no admin API")
	alertURL := flags.String("alert-webhook", getenv("GATEKIT_ALERT_WEBHOOK"), "URL to POST budget alerts to (50, 80 and 100% of a budget), signed with -alert-secret; env GATEKIT_ALERT_WEBHOOK")
	alertSecret := flags.String("alert-secret", getenv("GATEKIT_ALERT_SECRET"), "HMAC-SHA256 key of the alert webhook's signature; env GATEKIT_ALERT_SECRET")
	grace := flags.Duration("grace", 10*time.Second, "how long a shutdown waits for requests in flight before it settles them and closes their connections")
	if err := flags.Parse(args); err != nil {
		return err
	}

	var (
		cfg    gatekit.Config
		err    error
		client *redis.Client
	)
	if *configPath == "" {
		cfg, err = gatekit.ParseConfig(defaultConfig)
	} else {
		cfg, err = gatekit.LoadConfig(*configPath)
	}
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	cfg.Logger = logger
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Metrics = registry
	if *redisURL != "" {
		opts, err := redis.ParseURL(*redisURL)
		if err != nil {
			return fmt.Errorf("-redis: %w", err)
		}
		opts.ContextTimeoutEnabled = true
		// The admission store's calls made at the same time share round
		// trips through the client's autopipeliner; full duplex streams
		// them on one connection instead of one batch per round trip,
		// which keeps batching from adding latency (see the README's "Load
		// over HTTP").
		opts.AutoPipelineOptions = &redis.AutoPipelineOptions{FullDuplex: true}
		// go-redis's own lines (failed dials during an outage) go to the
		// same structured log, throttled, instead of stderr.
		redislog.Use(logger)
		client = redis.NewClient(opts)
		defer client.Close()
		if cfg.Store, err = admredis.New(client, nil); err != nil {
			return err
		}
		// Idempotency keys are kept by the admission store, claimed and
		// ended by the same scripts as each request's reservation.
		logger.Info("stores on redis", "addr", opts.Addr)
	}

	if *dataDir != "" {
		cfg.Data.Dir = *dataDir
	}
	if *adminToken != "" {
		switch {
		case client != nil:
			if cfg.RuntimeKeys.Store, err = keysredis.New(client, nil); err != nil {
				return err
			}
		case cfg.Data.Dir != "":
			d, err := keys.OpenDurable(cfg.Data.Dir)
			if err != nil {
				return err
			}
			defer d.Close()
			cfg.RuntimeKeys.Store = d
		default:
			cfg.RuntimeKeys.Store = keys.NewMemory()
		}
	}
	var gate *gatekit.Gate
	if *alertURL != "" {
		notifier, stopAlerts, err := startAlerts(cfg, client, *alertURL, *alertSecret, registry, logger, func() *gatekit.Gate { return gate })
		if err != nil {
			return err
		}
		defer stopAlerts()
		cfg.OnSettle = notifier.Observe
	}
	e, gate, err := app.New(cfg)
	if err != nil {
		return err
	}
	// Closed last (defers run in reverse): after the server has let every
	// request finish and settle, the durable store writes what is queued.
	defer func() {
		if cerr := gate.Close(); cerr != nil {
			logger.Error("closing the data store", "error", cerr.Error())
		}
	}()
	if *adminToken != "" {
		if err := admin.Register(e.Group("/admin/v1"), admin.Config{Gate: gate, Token: *adminToken}); err != nil {
			gate.Close()
			return err
		}
		logger.Info("admin API enabled", "path", "/admin/v1/")
	}
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(registry, promhttp.HandlerOpts{})))
	middleware.HeadForGet(e)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	// Production timeouts: slow headers and bodies, clients that stop
	// reading and idle keep-alive connections are cut off; long streams
	// are not.
	srv := gatekit.NewServer(e, &gatekit.ServerConfig{Logger: logger})
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("provider listening", "addr", ln.Addr().String())
	if ready != nil {
		ready(ln.Addr().String())
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down: letting requests finish")
	shutdown, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	err = srv.Shutdown(shutdown)
	if errors.Is(err, context.DeadlineExceeded) {
		// Streams to clients that stopped reading, or handlers that are
		// too slow: settle them for what they reported so far, then cut
		// their connections.
		n := gate.SettleInFlight()
		logger.Warn("shutdown grace period over: settled the requests still in flight and closed their connections",
			"grace", grace.String(), "settled", n)
		err = srv.Close()
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// startAlerts starts the budget alerts' notifier, its ledger on Redis, in
// the data directory or in memory, reading balances from the gate that
// gate returns once mounted. stop stops it and closes its ledger.
func startAlerts(cfg gatekit.Config, client *redis.Client, url, secret string, reg prometheus.Registerer, logger *slog.Logger, gate func() *gatekit.Gate) (n *alerts.Notifier, stop func(), err error) {
	var ledger alerts.Ledger
	closeLedger := func() {}
	switch {
	case client != nil:
		s, err := alertsredis.New(client, nil)
		if err != nil {
			return nil, nil, err
		}
		ledger = s
	case cfg.Data.Dir != "":
		d, err := alerts.OpenDurable(cfg.Data.Dir)
		if err != nil {
			return nil, nil, err
		}
		ledger, closeLedger = d, func() { d.Close() }
	}
	n, err = alerts.New(alerts.Config{
		Balance: func(ctx context.Context, s budget.Scope) (budget.Balance, error) {
			return gate().Store().Balance(ctx, s)
		},
		Ledger: ledger, WebhookURL: url, Secret: secret, Metrics: reg, Logger: logger,
	})
	if err != nil {
		closeLedger()
		return nil, nil, fmt.Errorf("-alert-webhook: %w", err)
	}
	return n, func() { n.Close(); closeLedger() }, nil
}
